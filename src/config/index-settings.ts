import { cacheIndexSettings, lookUpIndexSettings, type IndexSettings } from "./settings.js";

/**
 * Reads the config's `index` and `registry` settings from the cache, or loads the config and
 * caches them, because loading a TypeScript config costs far more than a `resolve`.
 */
export async function readIndexSettings(options: {
  cwd: string;
  configPath: string | undefined;
  home: string;
}): Promise<IndexSettings> {
  const lookup = await lookUpIndexSettings(options);
  if (lookup.settings) return lookup.settings;

  const { loadConfig } = await import("./load.js");
  const config = await loadConfig({ cwd: options.cwd, configPath: lookup.file });
  const settings: IndexSettings = {
    ...(config.registry ? { registry: config.registry } : {}),
    ...(config.index ? { index: config.index } : {}),
  };
  await cacheIndexSettings(options.home, lookup, settings, config.inputs);
  return settings;
}
