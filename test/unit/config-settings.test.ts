import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readIndexSettings } from "../../src/config/index-settings.js";

let dir: string;
let home: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-settings-"));
  home = path.join(dir, ".home");
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const config = (index: string) =>
  `import { defineConfig, Image } from "modal-image";
export default defineConfig({ registry: "127.0.0.1:5000", index: "${index}", images: { a: Image.fromScratch() } });
`;

const variable = "MODAL_IMAGE_TEST_SETTINGS_REGISTRY";

afterEach(() => {
  delete process.env[variable];
});

describe("readIndexSettings", () => {
  it("reads the config again when a variable it read changes", async () => {
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { Image } from "modal-image";
export default { registry: process.env.${variable} ?? "127.0.0.1:5000", images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });

    expect((await read()).registry).toBe("127.0.0.1:5000");
    process.env[variable] = "127.0.0.1:5001";
    expect((await read()).registry).toBe("127.0.0.1:5001");
    delete process.env[variable];
    expect((await read()).registry).toBe("127.0.0.1:5000");
  });

  it("reads the config again when a module it imports changes", async () => {
    const helper = path.join(dir, "registry.ts");
    await fs.writeFile(helper, 'export const registry = "127.0.0.1:5000";\n');
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { Image } from "modal-image";
import { registry } from "./registry.ts";
export default { registry, images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect((await read()).registry).toBe("127.0.0.1:5000");

    await fs.writeFile(helper, 'export const registry = "127.0.0.1:5001";\n');
    await fs.utimes(helper, new Date(), new Date(Date.now() + 5_000));

    expect((await read()).registry).toBe("127.0.0.1:5001");
  });

  it("does not cache a config that lists the environment", async () => {
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { Image } from "modal-image";
const names = Object.keys(process.env);
export default { registry: names.includes("${variable}") ? "127.0.0.1:5001" : "127.0.0.1:5000", images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });

    expect((await read()).registry).toBe("127.0.0.1:5000");
    process.env[variable] = "set";
    expect((await read()).registry).toBe("127.0.0.1:5001");
  });

  it("returns nothing without a config", async () => {
    expect(await readIndexSettings({ cwd: dir, configPath: undefined, home })).toEqual({});
  });

  it("ignores a package.json that only names the package", async () => {
    await fs.writeFile(
      path.join(dir, "package.json"),
      JSON.stringify({ name: "x", dependencies: { "modal-image": "1.0.0" } }),
    );
    expect(await readIndexSettings({ cwd: dir, configPath: undefined, home })).toEqual({});
  });

  it("reads the index and registry of image.config.ts", async () => {
    await fs.writeFile(path.join(dir, "image.config.ts"), config("registry"));
    const settings = await readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect(settings).toEqual({ registry: "127.0.0.1:5000", index: "registry" });
  });

  it("serves a second read from the cache and refreshes it on change", async () => {
    const file = path.join(dir, "image.config.ts");
    await fs.writeFile(file, config("registry"));
    await readIndexSettings({ cwd: dir, configPath: undefined, home });
    const cache = path.join(home, "cache", "config-settings.json");
    const entries = JSON.parse(await fs.readFile(cache, "utf8")) as Array<{ index: string }>;
    expect(entries).toHaveLength(1);
    // A value planted in the cache shows that an unchanged file is not loaded again.
    await fs.writeFile(cache, JSON.stringify([{ ...entries[0], index: "planted" }]));
    expect((await readIndexSettings({ cwd: dir, configPath: undefined, home })).index).toBe(
      "planted",
    );

    await fs.writeFile(file, config("local"));
    // A different size or mtime is a different key, so the new value is read.
    await fs.utimes(file, new Date(), new Date(Date.now() + 5_000));
    const settings = await readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect(settings.index).toBe("local");
    expect(JSON.parse(await fs.readFile(cache, "utf8"))).toHaveLength(1);
  });

  it("reads a same-size rewrite with its mtime set back", async () => {
    const file = path.join(dir, "image.config.ts");
    const text = (port: number) =>
      `import { Image } from "modal-image";\nexport default { registry: "127.0.0.1:${port}", images: { a: Image.fromScratch() } };\n`;
    await fs.writeFile(file, text(5000));
    const before = await fs.stat(file);
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect((await read()).registry).toBe("127.0.0.1:5000");

    await fs.writeFile(file, text(5001));
    await fs.utimes(file, before.atime, before.mtime);

    expect((await read()).registry).toBe("127.0.0.1:5001");
  });

  it("reads the config again when a file it checked appears", async () => {
    const flag = path.join(dir, "use-5001");
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { existsSync } from "node:fs";
import { Image } from "modal-image";
const registry = existsSync(${JSON.stringify(flag)}) ? "127.0.0.1:5001" : "127.0.0.1:5000";
export default { registry, images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect((await read()).registry).toBe("127.0.0.1:5000");

    await fs.writeFile(flag, "");

    expect((await read()).registry).toBe("127.0.0.1:5001");
  });

  it("reads the config again when a URL-named file appears", async () => {
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { existsSync } from "node:fs";
import { Image } from "modal-image";
const flag = new URL("./use-5001", ${JSON.stringify(`file://${dir}/`)});
const registry = existsSync(flag) ? "127.0.0.1:5001" : "127.0.0.1:5000";
export default { registry, images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect((await read()).registry).toBe("127.0.0.1:5000");

    await fs.writeFile(path.join(dir, "use-5001"), "");

    expect((await read()).registry).toBe("127.0.0.1:5001");
  });

  it("reads the config again when a listed subdirectory changes", async () => {
    await fs.mkdir(path.join(dir, "data", "sub"), { recursive: true });
    await fs.writeFile(
      path.join(dir, "image.config.ts"),
      `import { readdirSync } from "node:fs";
import { Image } from "modal-image";
const count = readdirSync(${JSON.stringify(path.join(dir, "data"))}, { recursive: true }).length;
export default { registry: \`127.0.0.1:5000/n\${count}\`, images: { a: Image.fromScratch() } };
`,
    );
    const read = () => readIndexSettings({ cwd: dir, configPath: undefined, home });
    expect((await read()).registry).toBe("127.0.0.1:5000/n1");

    await fs.writeFile(path.join(dir, "data", "sub", "new"), "");

    expect((await read()).registry).toBe("127.0.0.1:5000/n2");
  });
});
