import type { TestProject } from "vitest/node";
import { checkStack } from "./stack.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Missing parts of the test stack, empty when all are up. Always empty in CI, which fails instead. */
    stackMissing: string[];
  }
}

/**
 * Checks the test stack once before any test file runs. In CI a missing part fails the run.
 * Elsewhere it prints a warning and passes the missing parts to the tests, through
 * `inject("stackMissing")` and MODAL_IMAGE_STACK_MISSING (a comma-separated list), so that
 * integration tests can skip.
 */
export default async function setup(project: TestProject): Promise<void> {
  const missing = await checkStack();
  project.provide("stackMissing", missing);
  if (missing.length === 0) {
    return;
  }

  if (process.env.CI) {
    throw new Error(
      `test stack incomplete, missing: ${missing.join("; ")}. ` +
        "Run `bash scripts/stack.sh up` as root, then run the tests again.",
    );
  }
  process.env.MODAL_IMAGE_STACK_MISSING = missing.join(",");
  process.stderr.write(
    `warning: test stack incomplete, integration tests will skip. Missing: ${missing.join("; ")}. ` +
      "Run `bash scripts/stack.sh up` as root to start it.\n",
  );
}
