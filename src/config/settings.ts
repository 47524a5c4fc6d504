import fs from "node:fs/promises";
import path from "node:path";
import { configFileNames, packageJsonKey } from "./files.js";
import { inputsUnchanged, type ConfigInputs } from "./inputs.js";
import { writeFileAtomically } from "../util/atomic-write.js";

/** The config's settings that commands other than build need: where names live. */
export interface IndexSettings {
  registry?: string;
  index?: "local" | "registry";
}

interface CachedSettings extends IndexSettings {
  /** The config file's path, size and modification time when the settings were read. */
  key: string;
  /** The environment variables and files the config read, which must still match. */
  inputs?: ConfigInputs;
}

const searchPlaces = ["package.json", ...configFileNames];

async function statFile(file: string) {
  const stats = await fs.stat(file).catch(() => undefined);
  return stats?.isFile() ? stats : undefined;
}

/**
 * Returns whether a package.json has a top-level "modal-image" key. One that does not parse is
 * treated as a config, so that loadConfig reports it.
 */
export async function hasConfigKey(file: string): Promise<boolean> {
  try {
    const manifest: unknown = JSON.parse(await fs.readFile(file, "utf8"));
    return typeof manifest === "object" && manifest !== null && packageJsonKey in manifest;
  } catch {
    return true;
  }
}

/** Finds the config file the way loadConfig does, reading only package.json files. */
export async function findConfigFile(cwd: string): Promise<string | undefined> {
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    for (const place of searchPlaces) {
      const file = path.join(dir, place);
      if (!(await statFile(file))) continue;
      if (place !== "package.json") return file;
      if (await hasConfigKey(file)) return file;
    }
    if (dir === path.dirname(dir)) return undefined;
  }
}

/**
 * Reads the config's `index` and `registry` settings. Loading a TypeScript config costs far
 * more than a `resolve`, so the settings are cached in `$MODAL_IMAGE_HOME/cache`, keyed by the
 * config file's path, size and modification time, and by the environment variables and files
 * the config read while it was evaluated. A config that listed the whole environment is not
 * cached.
 *
 * NOTE: reads that the recording cannot see (fs.promises, child processes, the network, the
 * clock) do not invalidate the cache. Touch the config file to refresh it.
 */
export async function readIndexSettings(options: {
  cwd: string;
  configPath: string | undefined;
  home: string;
}): Promise<IndexSettings> {
  const file = options.configPath
    ? path.resolve(options.cwd, options.configPath)
    : await findConfigFile(options.cwd);
  if (!file) return {};
  const stats = await statFile(file);
  const key = stats ? `${file}\0${stats.size}\0${stats.mtimeMs}` : undefined;
  const cacheFile = path.join(options.home, "cache", "config-settings.json");
  const cached = key ? await readCache(cacheFile) : undefined;
  const hit = cached?.find(
    (entry) =>
      entry.key === key &&
      (entry.inputs === undefined || inputsUnchanged(entry.inputs, process.env)),
  );
  if (hit)
    return {
      ...(hit.registry ? { registry: hit.registry } : {}),
      ...(hit.index ? { index: hit.index } : {}),
    };

  const { loadConfig } = await import("./load.js");
  const config = await loadConfig({ cwd: options.cwd, configPath: file });
  const settings: IndexSettings = {
    ...(config.registry ? { registry: config.registry } : {}),
    ...(config.index ? { index: config.index } : {}),
  };
  if (key && config.inputs && !config.inputs.readWholeEnvironment)
    await writeCache(cacheFile, [
      ...(cached ?? []).filter((entry) => !entry.key.startsWith(`${file}\0`)),
      { key, inputs: config.inputs, ...settings },
    ]);
  return settings;
}

async function readCache(file: string): Promise<CachedSettings[] | undefined> {
  try {
    const value: unknown = JSON.parse(await fs.readFile(file, "utf8"));
    return Array.isArray(value) ? (value as CachedSettings[]) : undefined;
  } catch {
    return undefined;
  }
}

/** Replaces the cache file atomically; a cache that cannot be written is only slower. */
async function writeCache(file: string, entries: CachedSettings[]): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomically(file, JSON.stringify(entries.slice(-50)));
  } catch {
    // The cache only saves time; a failed write leaves the next run to load the config again.
  }
}
