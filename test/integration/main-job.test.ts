import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { binPath, repoRoot, skipIntegration } from "../helpers/cli.js";
import { docker } from "../helpers/docker.js";
import { manifestDigest } from "../helpers/registry.js";

// The README's main job: build the repository's own image.config.ts and publish
// analytics-runtime. The first run installs Debian's scientific Python packages, which takes
// minutes; later runs reuse the daemon's layer cache.
describe.skipIf(skipIntegration)("the repository's analytics-runtime", () => {
  let home: string;

  const cli = async (args: string[]) => {
    const result = await execa(binPath, args, {
      cwd: repoRoot,
      env: { MODAL_IMAGE_HOME: home, MODAL_IMAGE_REGISTRY: undefined, NO_COLOR: "1" },
      reject: false,
      stdin: "ignore",
      timeout: 1_200_000,
    });
    return {
      exitCode: result.exitCode,
      stdout: String(result.stdout),
      stderr: String(result.stderr),
    };
  };

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-main-job-"));
  });

  afterAll(async () => {
    await fs.rm(home, { recursive: true, force: true });
  });

  it("builds, publishes and imports sklearn", { timeout: 1_200_000 }, async () => {
    const built = await cli(["build", "--publish", "analytics-runtime"]);
    expect(built.stderr).not.toContain("error:");
    expect(built.exitCode).toBe(0);
    expect(built.stdout).toMatch(/^127\.0\.0\.1:5000\/analytics-runtime@sha256:[a-f0-9]{64}$/);
    const digest = built.stdout.split("@")[1]!;
    expect(await manifestDigest("127.0.0.1:5000", "analytics-runtime", digest)).toBe(digest);

    const resolved = await cli(["resolve", "analytics-runtime"]);
    expect(resolved.stdout).toBe(built.stdout);

    const tags = await cli(["tags", "analytics-runtime"]);
    expect(tags.stdout.split(/\s+/).slice(0, 2)).toEqual(["latest", digest]);

    const version = await docker([
      "run",
      "--rm",
      resolved.stdout,
      "python3",
      "-c",
      "import sklearn; print(sklearn.__version__)",
    ]);
    expect(version).toMatch(/^\d+\.\d+/);
  });
});
