import { throwIfAborted, UsageError } from "../errors.js";
import { modalImageHome } from "../home.js";
import { LocalIndex } from "../index-store/local.js";
import type { NameIndex } from "../index-store/types.js";
import { parseRegistry } from "../names.js";
import type { ProgressEvent } from "../output/progress.js";
import {
  checkRegistryOption,
  chooseRegistryText,
  indexKindOption,
  needsConfigSettings,
  type ConfigSettings,
} from "./index-choice.js";

/** Options every command function takes. All are optional for library callers. */
export interface CommandOptions {
  /** Directory the config search starts from. @default process.cwd() */
  cwd?: string;
  /** Config file to load instead of searching. */
  configPath?: string;
  /** Environment to read settings from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** The name index to use, `local` or `registry`; overrides `MODAL_IMAGE_INDEX` and the config. */
  index?: string;
  /** Overrides `MODAL_IMAGE_REGISTRY` and the config's `registry`. */
  registry?: string;
  /** Aborts the daemon's work when signalled. */
  signal?: AbortSignal;
  /** Receives progress while images are built, pushed and published. */
  onProgress?: (event: ProgressEvent) => void;
}

/**
 * Opens the name index: --index, then MODAL_IMAGE_INDEX, then the config's `index`, else local.
 * Without `config`, the config's settings are read through a cache, because loading a
 * TypeScript config costs more than the lookup itself.
 */
export async function openIndex(
  options: CommandOptions,
  config?: ConfigSettings,
): Promise<NameIndex> {
  const env = options.env ?? process.env;
  const home = modalImageHome(env);
  // Checked even when the local index ignores it, as a typo there is a typo either way.
  checkRegistryOption(options);
  let kind = indexKindOption(options);
  let settings = config;
  if (!settings && needsConfigSettings(options, kind)) {
    const { readIndexSettings } = await import("../config/index-settings.js");
    settings = await readIndexSettings({
      cwd: options.cwd ?? process.cwd(),
      configPath: options.configPath,
      home,
    });
  }
  // A signal during the config load must stop a command before it changes any name.
  throwIfAborted(options.signal, "config load");
  kind ??= settings?.index ?? "local";
  if (kind === "local") return new LocalIndex(home);

  const registry = chooseRegistryText(options, settings ?? {});
  if (!registry) {
    throw new UsageError("the registry index needs a registry", {
      hint: "set registry in the config, MODAL_IMAGE_REGISTRY, or --registry",
    });
  }
  const location = parseRegistry(registry.value, registry.source);
  const { RegistryIndex } = await import("../index-store/registry.js");
  return new RegistryIndex(location, env, options.signal ? { signal: options.signal } : {});
}
