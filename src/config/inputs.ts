import fs, { statSync, type Stats } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The inputs a config read while it was evaluated, beyond its own file: the environment
 * variables it looked up and the files it read synchronously (imported modules among them). A
 * cached result of the config is valid while these are unchanged.
 */
export interface ConfigInputs {
  /** Each variable read, with its value then, or null when it was unset. */
  env: Record<string, string | null>;
  /**
   * Each file read or checked, outside node_modules, with its size, modification and change
   * times and inode then, or "missing".
   */
  files: Record<string, string>;
  /** Whether the config listed the whole environment, which no cache key can cover. */
  readWholeEnvironment: boolean;
}

/** The synchronous fs calls whose path argument is recorded as an input. */
const recordedCalls = [
  "readFileSync",
  "existsSync",
  "statSync",
  "lstatSync",
  "readdirSync",
] as const;

/**
 * Runs `evaluate` while recording what it reads from `process.env` and the paths it passes to
 * `recordedCalls`, which include jiti's reads of the config's modules. Reads through other
 * calls (fs.promises, child processes, the network) are not seen.
 */
export async function recordConfigInputs<T>(
  evaluate: () => Promise<T>,
): Promise<{ result: T; inputs: ConfigInputs }> {
  const inputs: ConfigInputs = { env: {}, files: {}, readWholeEnvironment: false };
  const environment = process.env;
  // Loaded here, because resolve reaches this module through the settings cache.
  const { syncBuiltinESMExports } = await import("node:module");
  const originals = new Map(recordedCalls.map((name) => [name, fs[name]]));
  const note = (key: string | symbol) => {
    if (typeof key === "string" && !(key in inputs.env)) inputs.env[key] = environment[key] ?? null;
  };
  process.env = new Proxy(environment, {
    get(target, key) {
      note(key);
      return Reflect.get(target, key) as string | undefined;
    },
    has(target, key) {
      note(key);
      return Reflect.has(target, key);
    },
    getOwnPropertyDescriptor(target, key) {
      note(key);
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
    ownKeys(target) {
      inputs.readWholeEnvironment = true;
      return Reflect.ownKeys(target);
    },
  });
  for (const [name, original] of originals) {
    // A plain function, so that a caller's `this` reaches the original.
    const recording = function (this: unknown, ...args: unknown[]) {
      const file = pathArgument(args[0]);
      if (file !== undefined) noteFile(inputs, file);
      const result = (original as (...values: unknown[]) => unknown).apply(this, args);
      if (file !== undefined && name === "readdirSync" && isRecursive(args[1])) {
        // A directory's stamp changes only when its own entries do, so a recursive listing
        // records every path below it as well.
        for (const entry of result as unknown[]) noteFile(inputs, entryPath(file, entry));
      }
      return result;
    };
    Object.assign(fs, { [name]: recording });
  }
  // Named imports such as `import { existsSync } from "node:fs"` see the patched calls only
  // after this.
  syncBuiltinESMExports();
  try {
    return { result: await evaluate(), inputs };
  } finally {
    process.env = environment;
    for (const [name, original] of originals) Object.assign(fs, { [name]: original });
    syncBuiltinESMExports();
  }
}

/** Returns a path given as a string, a Buffer or a file: URL, the forms fs calls accept. */
function pathArgument(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (value instanceof URL && value.protocol === "file:") return fileURLToPath(value);
  return undefined;
}

function isRecursive(options: unknown): boolean {
  return typeof options === "object" && options !== null && "recursive" in options
    ? Boolean(options.recursive)
    : false;
}

/** Returns the path of an entry of a recursive readdirSync of `directory`. */
function entryPath(directory: string, entry: unknown): string {
  if (typeof entry === "string") return join(directory, entry);
  if (Buffer.isBuffer(entry)) return join(directory, entry.toString("utf8"));
  // A Dirent has only its base name, and the directory it was found in.
  const dirent = entry as { name: string | Buffer; parentPath?: string; path?: string };
  return join(dirent.parentPath ?? dirent.path ?? directory, String(dirent.name));
}

function noteFile(inputs: ConfigInputs, file: string): void {
  const absolute = resolve(file);
  // jiti's cache of compiled modules, which it reads in place of a module it compiled before.
  const jitiCacheDir = join(tmpdir(), "jiti") + sep;
  if (absolute.split(sep).includes("node_modules") || absolute.startsWith(jitiCacheDir)) {
    return;
  }
  if (absolute in inputs.files) return;
  // Set first, so that a stamp taken through a patched call does not come back here.
  inputs.files[absolute] = "missing";
  inputs.files[absolute] = fileStamp(absolute) ?? "missing";
}

/**
 * Returns a file's size, modification and change times and inode, or undefined when it cannot
 * be stated. The change time moves on every write, also when the modification time is set back.
 */
function fileStamp(file: string): string | undefined {
  try {
    const stats = statSync(file, { throwIfNoEntry: false });
    return stats ? stampOf(stats) : undefined;
  } catch {
    // Module resolution probes paths such as `index.ts/image.js`, which fail with ENOTDIR.
    return undefined;
  }
}

/** Reports whether every recorded input still has the value or stamp it had. */
export function inputsUnchanged(inputs: ConfigInputs, env: NodeJS.ProcessEnv): boolean {
  if (inputs.readWholeEnvironment) return false;
  for (const [key, value] of Object.entries(inputs.env)) {
    if ((env[key] ?? null) !== value) return false;
  }
  for (const [file, stamp] of Object.entries(inputs.files)) {
    if ((fileStamp(file) ?? "missing") !== stamp) return false;
  }
  return true;
}

/** Returns the stamp of a file's stats: size, modification and change times, and inode. */
export function stampOf(stats: Stats): string {
  return `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;
}
