import fs from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { defaultLoaders, type Loader } from "cosmiconfig";
import { UsageError } from "../errors.js";
import { Image as ImageClass, isImage, type Image } from "../image/image.js";
import { validateImage, type Problem } from "../image/validate.js";
import { isValidName, maxRepositoryLength, nameGrammar, parseRegistry } from "../names.js";
import { isBundled, packagePath } from "../package-root.js";
import { closestMatch } from "../util/similar.js";
import { packageJsonKey, parseJsonText, searchPlaces } from "./files.js";
import { findConfigFile } from "./settings.js";
import { recordConfigInputs, type ConfigInputs } from "./inputs.js";
import { imageFromJson } from "./from-json.js";

/** A config that loaded and passed validation. */
export interface LoadedConfig {
  /** Absolute path of the config file. */
  filepath: string;
  /** Directory that relative local paths in the config resolve against. */
  dir: string;
  registry: string | undefined;
  index: "local" | "registry" | undefined;
  images: ReadonlyMap<string, Image>;
  /** What the config read while it was evaluated, which decides whether a cached result holds. */
  inputs?: ConfigInputs;
}

// The package entry, so that `import { Image } from "modal-image"` in a config loads the same
// modules as the CLI, even where the config's directory has no node_modules. Tests run the
// TypeScript sources.
function packageEntry(): string {
  return packagePath(isBundled ? "dist/bundle/index.js" : "src/index.ts");
}

// Loaded through require: importing jiti's ESM entry makes Node lex its 190 KB CommonJS build
// for export names first, which costs more than the rest of the config load.
const requireModule = createRequire(import.meta.url);

const loadModule: Loader = async (filepath) => {
  const { createJiti } = requireModule("jiti") as typeof import("jiti");
  const jiti = createJiti(import.meta.url, {
    alias: { "modal-image": packageEntry() },
    moduleCache: false,
    interopDefault: false,
  });
  const module = await jiti.import<Record<string, unknown>>(filepath);
  if (typeof module === "object" && module !== null && "default" in module) {
    // cosmiconfig fails on a loader result of null with a TypeError, so report it here.
    if (module.default === null || module.default === undefined) {
      throw new UsageError(
        `invalid config ${filepath}: expected an object with "images", got ${String(module.default)}`,
        { hint: "export default defineConfig({ images: { ... } })" },
      );
    }
    return module.default;
  }
  // A CommonJS config assigns the config itself to module.exports.
  if (typeof module === "object" && module !== null && "images" in module) return module;
  throw new UsageError(`${filepath} has no default export`, {
    hint: "end the file with: export default defineConfig({ images: { ... } })",
  });
};

// cosmiconfig 9 parses JSON as it is, and a UTF-8 BOM, which Windows editors write, fails it.
const loadJson: Loader = (filepath, content) => {
  const config: unknown = defaultLoaders[".json"](filepath, content.replace(/^\uFEFF/, ""));
  return config;
};
const loadableExtensions = [".ts", ".mts", ".js", ".mjs", ".cjs", ".json"];

/**
 * Loads a config file that findConfigFile found or -c named, with the loader for its extension.
 * An empty file loads as undefined. No cosmiconfig explorer is used, because creating one reads
 * package.json and .config/config.* in the working directory for cosmiconfig's own settings.
 * So a byte order mark in package.json failed every command, and a `searchPlaces` setting in
 * .config/config.json made `build` find another file than `resolve`.
 */
async function loadConfigFile(file: string): Promise<unknown> {
  const content = await fs.readFile(file, "utf8");
  if (content.trim() === "") return undefined;
  const loader = path.extname(file) === ".json" ? loadJson : loadModule;
  return loader(file, content);
}

async function checkNamedConfig(file: string): Promise<void> {
  const stats = await fs.stat(file).catch(() => undefined);
  if (!stats) {
    throw new UsageError(`config file not found: ${file}`, {
      hint: "check the path given to -c/--config",
    });
  }
  if (stats.isDirectory()) {
    throw new UsageError(`config path is a directory: ${file}`, {
      hint: `name the file itself, such as -c ${path.join(file, "image.config.ts")}`,
    });
  }
  if (path.basename(file) !== "package.json" && !loadableExtensions.includes(path.extname(file))) {
    throw new UsageError(`unsupported config file type: ${file}`, {
      hint: `use one of ${loadableExtensions.join(", ")}, or a package.json with a "modal-image" key`,
    });
  }
}

/** Returns the `packageJsonKey` value of a package.json, parsed here so that a BOM is accepted. */
async function readPackageConfig(file: string): Promise<unknown> {
  const manifest = parseJsonText(await fs.readFile(file, "utf8"));
  if (typeof manifest !== "object" || manifest === null || !(packageJsonKey in manifest)) {
    throw new UsageError(`${file} has no "${packageJsonKey}" key`, {
      hint: `add a "${packageJsonKey}" key with the config, or pass -c with an image.config.ts`,
    });
  }
  return (manifest as Record<string, unknown>)[packageJsonKey];
}

async function readConfigFile(
  configPath: string | undefined,
  cwd: string,
): Promise<{ filepath: string; config: unknown }> {
  const named = configPath === undefined ? undefined : path.resolve(cwd, configPath);
  if (named) await checkNamedConfig(named);
  const file = named ?? (await findConfigFile(cwd));
  if (!file) {
    throw new UsageError(`no config file found in ${cwd} or any parent directory`, {
      hint: `create image.config.ts (or pass -c PATH); names searched: ${searchPlaces.join(", ")}`,
    });
  }
  try {
    if (path.basename(file) === "package.json") {
      return { filepath: file, config: await readPackageConfig(file) };
    }
    return { filepath: file, config: await loadConfigFile(file) };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`failed to load ${file}: ${reason}`, {
      hint: loadFailureHint(error, file),
      cause: error,
    });
  }
}

/**
 * Says what to fix in a config that threw while it loaded: a method that Image lacks, with the
 * closest one, or a syntax error, each with the line that the error's stack names in the file.
 */
function loadFailureHint(error: unknown, file: string): string {
  const line = errorLine(error, file);
  const at = line === undefined ? "" : ` at line ${line}`;
  const missing =
    error instanceof TypeError ? /\.(\w+) is not a function/.exec(error.message)?.[1] : undefined;
  if (missing !== undefined && !imageMethodNames().includes(missing)) {
    const guess = closestMatch(missing, imageMethodNames());
    return guess
      ? `Image has no method ${missing}${at}; did you mean ${guess}?`
      : `Image has no method ${missing}${at}; its methods are ${imageMethodNames().join(", ")}`;
  }
  // jiti reports a TypeScript parse error as a plain Error whose message starts "ParseError:".
  if (
    error instanceof SyntaxError ||
    (error instanceof Error && error.message.startsWith("ParseError:"))
  ) {
    return `fix the syntax error${at}`;
  }
  return `fix the file so it loads${at}, and export the config as its default export`;
}

/** Returns the line of `file` where the error was thrown, from the first stack frame there. */
function errorLine(error: unknown, file: string): number | undefined {
  if (!(error instanceof Error) || error.stack === undefined) return undefined;
  for (const frame of error.stack.split("\n")) {
    const index = frame.indexOf(`${file}:`);
    if (index === -1) continue;
    const line = /^(\d+):\d+/.exec(frame.slice(index + file.length + 1))?.[1];
    if (line !== undefined) return Number(line);
  }
  return undefined;
}

/** Returns the names of Image's constructors and layer methods, for a hint about a mistyped one. */
function imageMethodNames(): string[] {
  const statics = Object.getOwnPropertyNames(ImageClass).filter(
    (name) => typeof (ImageClass as unknown as Record<string, unknown>)[name] === "function",
  );
  const layers = Object.getOwnPropertyNames(ImageClass.prototype).filter(
    (name) => name !== "constructor",
  );
  return [...statics, ...layers];
}

function toImage(key: string, value: unknown, problems: Problem[]): Image | undefined {
  const path = `images.${key}`;
  if (!isValidName(key)) {
    problems.push({
      path,
      message: `invalid image name; a name is ${nameGrammar}, at most ${maxRepositoryLength} characters`,
    });
  }
  if (isImage(value)) return value;
  if (typeof value === "object" && value !== null) return imageFromJson(value, path, problems);
  problems.push({
    path,
    message: 'expected an Image, such as Image.fromRegistry("debian:bookworm-slim")',
  });
  return undefined;
}

/** Checks a loaded config value and returns its images, or throws a UsageError with every problem. */
export function validateConfig(config: unknown, filepath: string): LoadedConfig {
  const problems: Problem[] = [];
  if (config === undefined) {
    throw new UsageError(`config file ${filepath} is empty`, {
      hint: 'export default defineConfig({ images: { "my-image": Image.fromRegistry("debian:bookworm-slim") } })',
    });
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new UsageError(
      `invalid config ${filepath}: expected an object with "images", got ${config === null ? "null" : typeof config}`,
      {
        hint: 'export default defineConfig({ images: { "my-image": Image.fromRegistry("debian:bookworm-slim") } })',
      },
    );
  }
  const { registry, index, images, ...rest } = config as Record<string, unknown>;
  for (const key of Object.keys(rest)) {
    problems.push({
      path: key,
      message: "unknown setting; the config takes registry, index and images",
    });
  }
  if (index !== undefined && index !== "local" && index !== "registry") {
    problems.push({
      path: "index",
      message: `expected "local" or "registry", got ${JSON.stringify(index)}`,
    });
  }
  if (registry !== undefined) {
    if (typeof registry !== "string")
      problems.push({
        path: "registry",
        message: 'expected a string such as "127.0.0.1:5000/team"',
      });
    else {
      try {
        parseRegistry(registry);
      } catch (error) {
        problems.push({ path: "registry", message: (error as UsageError).message });
      }
    }
  }
  const loaded = new Map<string, Image>();
  if (typeof images !== "object" || images === null || Array.isArray(images)) {
    problems.push({ path: "images", message: "expected an object of image definitions by name" });
  } else {
    for (const [key, value] of Object.entries(images)) {
      const image = toImage(key, value, problems);
      if (!image) continue;
      for (const problem of validateImage(image, { baseDir: path.dirname(filepath) })) {
        problems.push({ path: `images.${key}.${problem.path}`, message: problem.message });
      }
      loaded.set(key, image);
    }
    if (Object.keys(images).length === 0)
      problems.push({ path: "images", message: "defines no images" });
  }
  if (problems.length > 0) {
    throw new UsageError(
      `invalid config ${filepath}: ${problems.length} problem${problems.length === 1 ? "" : "s"}`,
      {
        problems: problems.map((problem) => `${problem.path}: ${problem.message}`),
        hint: "fix the values listed above; nothing was built",
      },
    );
  }
  return {
    filepath,
    dir: path.dirname(filepath),
    registry: registry as string | undefined,
    index: index as LoadedConfig["index"],
    images: loaded,
  };
}

/** Finds, loads and validates the config. Contacts no daemon or registry. */
export async function loadConfig(
  options: { configPath?: string; cwd?: string } = {},
): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const { result, inputs } = await recordConfigInputs(() =>
    readConfigFile(options.configPath, cwd),
  );
  return { ...validateConfig(result.config, result.filepath), inputs };
}
