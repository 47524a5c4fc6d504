import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { UsageError } from "../../src/errors.js";

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-config-"));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, text);
  return file;
}

async function loadError(options: Parameters<typeof loadConfig>[0]): Promise<UsageError> {
  try {
    await loadConfig(options);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as UsageError;
  }
  throw new Error("expected loadConfig to fail");
}

const tsConfig = `import { defineConfig, Image } from "modal-image";
export default defineConfig({
  registry: "127.0.0.1:5000/team",
  images: { app: Image.fromRegistry("debian:bookworm-slim").aptInstall("git") },
});
`;

describe("loadConfig", () => {
  it("loads image.config.ts from a parent directory", async () => {
    await write("image.config.ts", tsConfig);
    await fs.mkdir(path.join(dir, "sub", "deeper"), { recursive: true });
    const config = await loadConfig({ cwd: path.join(dir, "sub", "deeper") });
    expect(config.filepath).toBe(path.join(dir, "image.config.ts"));
    expect(config.registry).toBe("127.0.0.1:5000/team");
    expect([...config.images.keys()]).toEqual(["app"]);
    expect(config.images.get("app")?.steps).toEqual([{ kind: "aptInstall", packages: ["git"] }]);
  });

  it("loads the same config saved with CRLF line ends", async () => {
    await write("image.config.ts", tsConfig.replace(/\n/g, "\r\n"));
    const config = await loadConfig({ cwd: dir });
    expect(config.images.get("app")?.steps).toEqual([{ kind: "aptInstall", packages: ["git"] }]);
  });

  it.each([
    ["image.config.json", '{"images": {"app": {"fromScratch": true}}}'],
    ["package.json", '{"name": "p", "modal-image": {"images": {"app": {"fromScratch": true}}}}'],
    [
      "image.config.ts",
      'import { Image } from "modal-image";\nexport default { images: { app: Image.fromScratch() } };',
    ],
  ])("loads %s with a UTF-8 BOM and CRLF", async (name, text) => {
    await write(name, `\uFEFF${text.replace(/\n/g, "\r\n")}\r\n`);
    const config = await loadConfig({ cwd: dir });
    expect(config.filepath).toBe(path.join(dir, name));
    expect(config.images.get("app")?.base).toEqual({ kind: "fromScratch" });
  });

  it("loads a named .mjs config with -c", async () => {
    const file = await write(
      "other/my.config.mjs",
      `import { Image } from "modal-image";\nexport default { images: { x: Image.fromScratch() } };\n`,
    );
    const config = await loadConfig({ cwd: dir, configPath: file });
    expect(config.dir).toBe(path.join(dir, "other"));
    expect(config.images.get("x")?.base).toEqual({ kind: "fromScratch" });
  });

  it("loads a JSON config as method calls", async () => {
    await write(
      "image.config.json",
      JSON.stringify({
        images: {
          app: {
            fromRegistry: "debian:bookworm-slim",
            aptInstall: ["git", "curl"],
            env: { A: "1" },
          },
          twice: [
            { fromScratch: null },
            { runCommands: "a" },
            { env: { B: "2" } },
            { runCommands: ["b", "c"] },
          ],
        },
      }),
    );
    const config = await loadConfig({ cwd: dir });
    expect(config.images.get("app")?.steps).toEqual([
      { kind: "aptInstall", packages: ["git", "curl"] },
      { kind: "env", vars: { A: "1" } },
    ]);
    expect(config.images.get("twice")?.steps.map((step) => step.kind)).toEqual([
      "runCommands",
      "env",
      "runCommands",
    ]);
  });

  it("reads the modal-image key of package.json", async () => {
    await write(
      "package.json",
      JSON.stringify({ name: "x", "modal-image": { images: { a: { fromScratch: true } } } }),
    );
    const config = await loadConfig({ cwd: dir });
    expect([...config.images.keys()]).toEqual(["a"]);
  });

  it("reports every problem with its path", async () => {
    await write(
      "image.config.ts",
      `import { defineConfig, Image } from "modal-image";
export default defineConfig({
  registry: "HTTP://bad",
  images: {
    "Bad Name": Image.fromScratch(),
    ok: Image.fromRegistry("debian").aptInstall("git", "curl", "bad;pkg").env({ K: "a\\nb" }),
  },
});
`,
    );
    const error = await loadError({ cwd: dir });
    expect(error.exitCode).toBe(2);
    expect(error.problems).toHaveLength(4);
    expect(error.problems[0]).toMatch(/^registry: /);
    expect(error.problems[1]).toMatch(/^images\.Bad Name: invalid image name/);
    expect(error.problems[2]).toMatch(/^images\.ok\.aptInstall\[2\]: .*"bad;pkg"/);
    expect(error.problems[3]).toMatch(/^images\.ok\.env\.K: /);
  });

  it("reports an unknown method in a JSON config", async () => {
    await write(
      "image.config.json",
      JSON.stringify({ images: { a: { fromScratch: true, aptInstal: ["git"] } } }),
    );
    const error = await loadError({ cwd: dir });
    expect(error.problems).toEqual([
      expect.stringMatching(/^images\.a\.aptInstal: unknown method/),
    ]);
  });

  it.each([
    ["a syntax error", "export default {", /failed to load .*image\.config\.ts/],
    ["a throw", 'throw new Error("boom from config")', /boom from config/],
    ["no default export", "export const x = 1;", /has no default export/],
    ["the wrong type", "export default 42;", /expected an object with "images", got number/],
    ["a null default", "export default null;", /expected an object with "images", got null/],
    ["an empty file", "", /is empty/],
  ])("names the file for %s", async (_case, text, pattern) => {
    await write("image.config.ts", text);
    const error = await loadError({ cwd: dir });
    expect(error.message).toMatch(pattern);
  });

  it("suggests the method a TypeScript config mistyped", async () => {
    await write(
      "image.config.ts",
      [
        'import { defineConfig, Image } from "modal-image";',
        "export default defineConfig({",
        '  images: { app: Image.fromRegistry("busybox:latest").aptInstal("git") },',
        "});",
        "",
      ].join("\n"),
    );

    const error = await loadError({ cwd: dir });

    expect(error.message).toMatch(/aptInstal is not a function/);
    expect(error.hint).toBe("Image has no method aptInstal at line 3; did you mean aptInstall?");
  });

  it("lists the methods for a name far from all of them", async () => {
    await write(
      "image.config.ts",
      'import { Image } from "modal-image";\nexport default { images: { a: Image.fromScratch().frobnicate() } };\n',
    );

    const error = await loadError({ cwd: dir });

    expect(error.hint).toMatch(
      /^Image has no method frobnicate at line 2; its methods are .*aptInstall/,
    );
  });

  it("points at the line of a syntax error", async () => {
    await write("image.config.ts", "export default {\n  images: {,\n};\n");

    const error = await loadError({ cwd: dir });

    expect(error.hint).toBe("fix the syntax error at line 2");
  });

  it("fails clearly when no config exists", async () => {
    const error = await loadError({ cwd: dir });
    expect(error.message).toContain("no config file found");
  });

  it("loads a CommonJS config", async () => {
    await write(
      "image.config.cjs",
      'const { Image } = require("modal-image");\nmodule.exports = { images: { c: Image.fromScratch() } };\n',
    );
    const config = await loadConfig({ cwd: dir });
    expect([...config.images.keys()]).toEqual(["c"]);
  });

  it("reports an empty config instead of searching on", async () => {
    await write("image.config.ts", tsConfig);
    await write("sub/image.config.ts", "");
    const error = await loadError({ cwd: path.join(dir, "sub") });
    expect(error.message).toContain(path.join(dir, "sub", "image.config.ts"));
  });

  it("skips a package.json with a BOM", async () => {
    await write("package.json", '\uFEFF{ "name": "app" }\r\n');
    await write("image.config.ts", tsConfig);

    const config = await loadConfig({ cwd: dir });

    expect(config.filepath).toBe(path.join(dir, "image.config.ts"));
  });

  it("loads a package.json config with a BOM", async () => {
    const images = { app: { fromScratch: true } };
    await write("package.json", `\uFEFF${JSON.stringify({ "modal-image": { images } })}\r\n`);

    const config = await loadConfig({ cwd: dir });

    expect([...config.images.keys()]).toEqual(["app"]);
  });

  it("ignores cosmiconfig's .config settings", async () => {
    await write("image.config.ts", tsConfig);
    await write("other.config.ts", "export default {};\n");
    await write(
      ".config/config.json",
      '{ "cosmiconfig": { "searchPlaces": ["other.config.ts"] } }',
    );
    await write(".config/broken/config.json", "{ broken");

    const config = await loadConfig({ cwd: dir });

    expect(config.filepath).toBe(path.join(dir, "image.config.ts"));
  });

  it("names the file for a package.json without the key", async () => {
    await write("package.json", '{ "name": "app" }');

    const error = await loadError({ cwd: dir, configPath: "package.json" });

    expect(error.message).toBe(`${path.join(dir, "package.json")} has no "modal-image" key`);
  });

  it("reports a malformed package.json as a config error", async () => {
    await write("package.json", "{ not json");
    await write("image.config.ts", tsConfig);
    const error = await loadError({ cwd: dir });
    expect(error.message).toContain("package.json");
  });

  it.each([
    ["a directory", ".", /is a directory/],
    ["a YAML file", "config.yaml", /unsupported config file type/],
  ])("rejects -c naming %s", async (_case, name, pattern) => {
    await write("config.yaml", "images: {}\n");
    const error = await loadError({ cwd: dir, configPath: name });
    expect(error.message).toMatch(pattern);
  });

  it("fails clearly when -c names a missing file", async () => {
    const error = await loadError({ cwd: dir, configPath: "missing.ts" });
    expect(error.message).toContain(path.join(dir, "missing.ts"));
  });
});

describe("JSON config argument shapes", () => {
  it.each([
    [{ fromScratch: true, cmd: "/bin/true" }, "images.a.cmd"],
    [{ fromScratch: true, entrypoint: "sh" }, "images.a.entrypoint"],
    [{ fromScratch: true, workdir: ["/a", "/b"] }, "images.a.workdir"],
    [{ debianSlim: "3.11" }, "images.a.debianSlim"],
    [{ debianSlim: { python_version: "3.9" } }, "images.a.debianSlim.python_version"],
    [
      { fromScratch: true, pipInstall: ["a", { indexURL: "x" }] },
      "images.a.pipInstall.options.indexURL",
    ],
    [{ fromScratch: true, env: "A=1" }, "images.a.env"],
    [{ fromScratch: true, env: ["A=1"] }, "images.a.env"],
    [
      { fromScratch: true, addLocalDir: ["d", "/d", { ignor: ["x"] }] },
      "images.a.addLocalDir.options.ignor",
    ],
  ])("reports %j at %s", async (image, path) => {
    await write("image.config.json", JSON.stringify({ images: { a: image } }));
    const error = await loadError({ cwd: dir });
    expect(error.problems.map((problem) => problem.split(":")[0])).toEqual([path]);
  });
});
