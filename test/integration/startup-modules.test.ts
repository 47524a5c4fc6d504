import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configText, createProject, skipIntegration, type TestProject } from "../helpers/cli.js";
import { removeImages } from "../helpers/docker.js";

// Loaded into each CLI run with --import. It registers `loaderHooksSource`, which appends the
// URL of every ES module to LOADED_MODULES_FILE before the module runs, and at exit it appends
// the paths of the CommonJS modules in require.cache.
const hookSource = `import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";
const require = createRequire(import.meta.url);
const file = process.env.LOADED_MODULES_FILE;
register("./loader-hooks.mjs", { parentURL: import.meta.url, data: { file } });
process.on("exit", () => {
  appendFileSync(file, Object.keys(require.cache).map((path) => path + "\\n").join(""));
});
`;

const loaderHooksSource = `import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
let file;
export function initialize(data) {
  file = data.file;
}
export async function load(url, context, next) {
  if (url.startsWith("file:")) appendFileSync(file, fileURLToPath(url) + "\\n");
  return next(url, context);
}
`;

// Unique per test run, because the local build is tagged with the image key as its repository.
const imageKey = `startup-modules-${process.pid}`;

describe.skipIf(skipIntegration)("modules loaded at start-up", () => {
  let project: TestProject;
  let hook: string;

  beforeAll(async () => {
    project = await createProject();
    hook = await project.write("hook.mjs", hookSource);
    await project.write("loader-hooks.mjs", loaderHooksSource);
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(imageKey)}: Image.fromRegistry("busybox:latest")` +
          `.runCommands("echo ${path.basename(project.dir)} > /marker") }`,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(imageKey);
    await project.cleanup();
  });

  /** Runs the CLI and returns its exit code and the paths of the module files it loaded. */
  async function loadedModules(
    args: readonly string[],
    env: Record<string, string> = {},
  ): Promise<{ exitCode: number; modules: string[] }> {
    const file = path.join(project.dir, `modules-${args.join("-")}.txt`);
    await rm(file, { force: true });
    const result = await project.cli(args, {
      env: { NODE_OPTIONS: `--import=${hook}`, LOADED_MODULES_FILE: file, ...env },
    });
    const modules = (await readFile(file, "utf8")).split("\n").filter((line) => line !== "");
    return { exitCode: result.exitCode, modules };
  }

  /**
   * Returns the loaded files that are `pkg`'s own or a bundle chunk that contains its code, which
   * esbuild marks with a comment naming each bundled source file.
   */
  async function filesOf(pkg: string, modules: readonly string[]): Promise<string[]> {
    const found: string[] = [];
    for (const module of new Set(modules)) {
      if (module.includes(`${path.sep}node_modules${path.sep}${pkg}${path.sep}`)) {
        found.push(module);
      } else if (
        module.endsWith(".js") &&
        (await readFile(module, "utf8")).includes(`// node_modules/${pkg}/`)
      ) {
        found.push(module);
      }
    }
    return found;
  }

  function dockerodeModules(modules: readonly string[]): Promise<string[]> {
    return filesOf("dockerode", modules);
  }

  // Proves that the hook records dockerode when it loads, so the checks below can fail.
  it("loads dockerode for a forced build", async () => {
    const { exitCode, modules } = await loadedModules(["build", "--json", "--force"]);

    expect(exitCode).toBe(0);
    expect(await dockerodeModules(modules)).not.toEqual([]);
  });

  it("loads neither SSH nor gRPC for a forced build", async () => {
    const { exitCode, modules } = await loadedModules(["build", "--json", "--force"]);

    expect(exitCode).toBe(0);
    // jiti is a CommonJS module that evaluates the config, so the list is not empty by accident.
    expect(await filesOf("jiti", modules)).not.toEqual([]);
    expect(await filesOf("ssh2", modules)).toEqual([]);
    expect(await filesOf("@grpc/grpc-js", modules)).toEqual([]);
    expect(await filesOf("protobufjs", modules)).toEqual([]);
  });

  it.each([
    ["--help"],
    ["dockerfile", imageKey],
    ["resolve", "missing-name"],
    ["tags", "missing-name"],
    ["history", "missing-name"],
  ])("skips dockerode for %s", async (...args) => {
    const { exitCode, modules } = await loadedModules(args);

    // The name lookups exit 3: the index has no such name.
    expect([0, 3]).toContain(exitCode);
    expect(await dockerodeModules(modules)).toEqual([]);
  });

  it("skips dockerode for an unchanged build", async () => {
    expect((await project.cli(["build", "--json"])).exitCode).toBe(0);

    const { exitCode, modules } = await loadedModules(["build", "--json"]);

    expect(exitCode).toBe(0);
    expect(await dockerodeModules(modules)).toEqual([]);
  });

  describe("the CommonJS fast path", () => {
    /** Runs the CLI and returns whether it loaded the ES module CLI, dist/bundle/cli.js. */
    async function loadsFullCli(args: readonly string[], env: Record<string, string> = {}) {
      const { exitCode, modules } = await loadedModules(args, env);
      const cli = path.join("dist", "bundle", "cli.js");
      return { exitCode, loaded: modules.some((module) => module.endsWith(cli)) };
    }

    it("serves resolve and tags alone", async () => {
      // The first run loads the config and caches its settings.
      await project.cli(["resolve", "missing-name"]);

      for (const args of [
        ["resolve", "missing-name"],
        ["tags", "missing-name"],
      ]) {
        const { exitCode, loaded } = await loadsFullCli(args);
        expect(exitCode).toBe(3);
        expect(loaded).toBe(false);
      }
    });

    it("leaves the registry index to the CLI", async () => {
      const { loaded } = await loadsFullCli(["resolve", "missing-name"], {
        MODAL_IMAGE_INDEX: "registry",
        MODAL_IMAGE_REGISTRY: "127.0.0.1:9/none",
      });

      expect(loaded).toBe(true);
    });

    it("leaves --help to the CLI", async () => {
      const { exitCode, loaded } = await loadsFullCli(["resolve", "--help"]);

      expect(exitCode).toBe(0);
      expect(loaded).toBe(true);
    });
  });
});
