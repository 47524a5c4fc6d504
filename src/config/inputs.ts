import fs from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, sep } from "node:path";

/**
 * The inputs a config read while it was evaluated, beyond its own file: the environment
 * variables it looked up and the files it read synchronously (imported modules among them). A
 * cached result of the config is valid while these are unchanged.
 */
export interface ConfigInputs {
  /** Each variable read, with its value then, or null when it was unset. */
  env: Record<string, string | null>;
  /** Each file read, outside node_modules, with its size and modification time then. */
  files: Record<string, string>;
  /** Whether the config listed the whole environment, which no cache key can cover. */
  readWholeEnvironment: boolean;
}

/**
 * Runs `evaluate` while recording what it reads from `process.env` and through
 * `fs.readFileSync`, which jiti uses to read the config's modules. Reads through other calls
 * (fs.promises, child processes, the network) are not seen.
 */
export async function recordConfigInputs<T>(
  evaluate: () => Promise<T>,
): Promise<{ result: T; inputs: ConfigInputs }> {
  const inputs: ConfigInputs = { env: {}, files: {}, readWholeEnvironment: false };
  const environment = process.env;
  const readFileSync = fs.readFileSync;
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
  const recordingReadFileSync = (...args: Parameters<typeof readFileSync>) => {
    const file = args[0];
    if (typeof file === "string") noteFile(inputs, file);
    return readFileSync(...args);
  };
  fs.readFileSync = recordingReadFileSync as typeof readFileSync;
  try {
    return { result: await evaluate(), inputs };
  } finally {
    process.env = environment;
    fs.readFileSync = readFileSync;
  }
}

function noteFile(inputs: ConfigInputs, file: string): void {
  const absolute = resolve(file);
  // jiti's cache of compiled modules, which it reads in place of a module it compiled before.
  const jitiCacheDir = join(tmpdir(), "jiti") + sep;
  if (absolute.split(sep).includes("node_modules") || absolute.startsWith(jitiCacheDir)) {
    return;
  }
  if (absolute in inputs.files) return;
  inputs.files[absolute] = fileStamp(absolute) ?? "missing";
}

/** Returns a file's size and modification time, or undefined when it cannot be read. */
export function fileStamp(file: string): string | undefined {
  const stats = fs.statSync(file, { throwIfNoEntry: false });
  return stats ? `${stats.size}:${stats.mtimeMs}` : undefined;
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
