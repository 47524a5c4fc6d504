import fs from "node:fs/promises";
import path from "node:path";
import { packageJsonKey, parseJsonText, searchPlaces } from "./files.js";
import { inputsUnchanged, stampOf, type ConfigInputs } from "./inputs.js";
import { writeFileAtomically } from "../util/atomic-write.js";

/** The config's settings that commands other than build need: where names live. */
export interface IndexSettings {
  registry?: string;
  index?: "local" | "registry";
}

interface CachedSettings extends IndexSettings {
  /** The config file's path and stamp (see stampOf) when the settings were read. */
  key: string;
  /** The environment variables and files the config read, which must still match. */
  inputs?: ConfigInputs;
}

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
    const manifest: unknown = parseJsonText(await fs.readFile(file, "utf8"));
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

/** The result of looking a config's settings up in the cache. */
export interface SettingsLookup {
  /** The settings, or undefined when the config must be loaded to know them. */
  settings: IndexSettings | undefined;
  /** The config file, when there is one. */
  file?: string;
  /** The cache key of the config file as it is now. */
  key?: string;
  /** Every entry in the cache file. */
  cached?: CachedSettings[];
}

/**
 * Looks up the config's `index` and `registry` settings in `$MODAL_IMAGE_HOME/cache`, where
 * they are keyed by the config file's path and stamp (see stampOf), and by the
 * environment variables and files the config read while it was evaluated. Without a config
 * file the settings are empty.
 *
 * NOTE: reads that the recording cannot see (fs.promises, child processes, the network, the
 * clock) do not invalidate the cache. Touch the config file to refresh it.
 */
export async function lookUpIndexSettings(options: {
  cwd: string;
  configPath: string | undefined;
  home: string;
}): Promise<SettingsLookup> {
  const file = options.configPath
    ? path.resolve(options.cwd, options.configPath)
    : await findConfigFile(options.cwd);
  if (!file) return { settings: {} };
  const stats = await statFile(file);
  if (!stats) return { settings: undefined, file };

  const key = `${file}\0${stampOf(stats)}`;
  const cached = await readCache(cacheFileIn(options.home));
  const hit = cached?.find(
    (entry) =>
      entry.key === key &&
      (entry.inputs === undefined || inputsUnchanged(entry.inputs, process.env)),
  );
  const settings = hit && {
    ...(hit.registry ? { registry: hit.registry } : {}),
    ...(hit.index ? { index: hit.index } : {}),
  };
  return { settings, file, key, ...(cached ? { cached } : {}) };
}

/**
 * Stores the settings of a config that `lookUpIndexSettings` missed, unless the config listed
 * the whole environment, which no key can cover.
 */
export async function cacheIndexSettings(
  home: string,
  lookup: SettingsLookup,
  settings: IndexSettings,
  inputs: ConfigInputs | undefined,
): Promise<void> {
  const { file, key } = lookup;
  if (!file || !key || !inputs || inputs.readWholeEnvironment) return;
  await writeCache(cacheFileIn(home), [
    ...(lookup.cached ?? []).filter((entry) => !entry.key.startsWith(`${file}\0`)),
    { key, inputs, ...settings },
  ]);
}

function cacheFileIn(home: string): string {
  return path.join(home, "cache", "config-settings.json");
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
