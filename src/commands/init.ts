import fs from "node:fs/promises";
import path from "node:path";
import { configFileNames, packageJsonKey } from "../config/files.js";
import { hasConfigKey } from "../config/settings.js";
import { UsageError } from "../errors.js";

export interface InitOptions {
  /** Directory to write `image.config.ts` into. @default process.cwd() */
  cwd?: string;
  /** Replace an existing `image.config.ts`. */
  force?: boolean;
}

const starterConfig = `import { defineConfig, Image } from "modal-image";

export default defineConfig({
  // Images are pushed here; MODAL_IMAGE_REGISTRY or --registry override it.
  // Remove it to keep images in the local daemon only.
  registry: "127.0.0.1:5000",
  images: {
    app: Image.fromRegistry("debian:bookworm-slim")
      .aptInstall("ca-certificates", "python3")
      .env({ PYTHONUNBUFFERED: "1" })
      .runCommands("python3 --version"),
  },
});
`;

/** Writes a starter `image.config.ts` and returns its path. Never overwrites without `force`. */
export async function init(options: InitOptions = {}): Promise<string> {
  const dir = path.resolve(options.cwd ?? process.cwd());
  const file = path.join(dir, "image.config.ts");
  for (const name of configFileNames) {
    const existing = path.join(dir, name);
    const found = await fs.stat(existing).catch(() => undefined);
    if (found && !(options.force && existing === file)) {
      throw new UsageError(`a config already exists: ${existing}`, {
        hint: options.force
          ? "remove it first; --force replaces only image.config.ts"
          : "edit it, or pass --force to replace image.config.ts",
      });
    }
  }
  // package.json comes first in the search, so its config would hide the new file.
  const manifest = path.join(dir, "package.json");
  if (
    (await fs.stat(manifest).catch(() => undefined))?.isFile() &&
    (await hasConfigKey(manifest))
  ) {
    throw new UsageError(`a config already exists: the "${packageJsonKey}" key of ${manifest}`, {
      hint: `edit it, or remove the "${packageJsonKey}" key from package.json first; that config is read before image.config.ts`,
    });
  }
  await fs.writeFile(file, starterConfig, { flag: options.force ? "w" : "wx" });
  return file;
}
