import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const binPath = path.join(repoRoot, "bin", "modal-image");

/** Whether integration tests may skip: only outside CI, when the stack is missing. */
export const skipIntegration = !process.env.CI && !!process.env.MODAL_IMAGE_STACK_MISSING;

/** A temporary project directory and name index, removed by `cleanup`. */
export interface TestProject {
  dir: string;
  home: string;
  /** Writes a file relative to the project directory, creating parent directories. */
  write(relativePath: string, content: string | Uint8Array): Promise<string>;
  /** Runs the CLI from the project directory with the project's name index. */
  cli(args: readonly string[], options?: CliOptions): Promise<CliResult>;
  cleanup(): Promise<void>;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  /** Milliseconds after which the run is killed and counts as failed. @default 600_000 */
  timeout?: number;
}

/** Environment for CLI runs: the caller's, without settings that would change the output. */
function baseEnv(home: string): Record<string, string | undefined> {
  return {
    MODAL_IMAGE_HOME: home,
    MODAL_IMAGE_REGISTRY: undefined,
    NO_COLOR: "1",
    FORCE_COLOR: undefined,
  };
}

export async function createProject(prefix = "modal-image-test-"): Promise<TestProject> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const home = path.join(dir, ".home");
  await fs.mkdir(home);
  return {
    dir,
    home,
    async write(relativePath, content) {
      const file = path.join(dir, relativePath);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, content);
      return file;
    },
    async cli(args, options = {}) {
      const timeout = options.timeout ?? 600_000;
      const result = await execa(binPath, [...args], {
        cwd: options.cwd ?? dir,
        env: { ...baseEnv(home), ...options.env },
        reject: false,
        stripFinalNewline: false,
        ...(options.input === undefined ? { stdin: "ignore" } : { input: options.input }),
        timeout,
      });
      if (result.timedOut) {
        throw new Error(`modal-image ${args.join(" ")} did not exit within ${timeout} ms`);
      }
      if (result.exitCode === undefined)
        throw new Error(`modal-image ${args.join(" ")}: ${result.message}`);
      return {
        exitCode: result.exitCode,
        stdout: String(result.stdout),
        stderr: String(result.stderr),
      };
    },
    async cleanup() {
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Returns a repository name unique to one test run, so parallel runs never share registry tags. */
export function uniqueName(label: string): string {
  return `modal-image-test/${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Returns the text of a config file that imports the package the way users do. */
export function configText(body: string, registry?: string): string {
  return [
    'import { defineConfig, Image } from "modal-image";',
    "",
    "export default defineConfig({",
    ...(registry ? [`  registry: ${JSON.stringify(registry)},`] : []),
    `  images: ${body},`,
    "});",
    "",
  ].join("\n");
}
