import { UsageError } from "../errors.js";
import { parseRegistry } from "../names.js";
import type { CommandOptions } from "./options.js";

/** The config's settings, when the caller has already loaded the config. */
export interface ConfigSettings {
  index?: "local" | "registry" | undefined;
  registry?: string | undefined;
}

export function checkIndexKind(value: string, source: string): "local" | "registry" {
  if (value === "local" || value === "registry") return value;
  throw new UsageError(`invalid ${source} ${JSON.stringify(value)}`, {
    hint: 'use "local" (names in $MODAL_IMAGE_HOME) or "registry" (names are the registry\'s tags)',
  });
}

/** Returns the registry setting: --registry, then MODAL_IMAGE_REGISTRY, then the config. */
export function chooseRegistryText(
  options: CommandOptions,
  config: ConfigSettings,
): { value: string; source: string } | undefined {
  const env = options.env ?? process.env;
  if (options.registry !== undefined)
    return { value: options.registry, source: "--registry value" };
  if (env.MODAL_IMAGE_REGISTRY)
    return { value: env.MODAL_IMAGE_REGISTRY, source: "MODAL_IMAGE_REGISTRY" };
  return config.registry === undefined ? undefined : { value: config.registry, source: "registry" };
}

/** Checks the value of --registry, or else of MODAL_IMAGE_REGISTRY, when either is set. */
export function checkRegistryOption(options: CommandOptions): void {
  const chosen = chooseRegistryText(options, {});
  if (chosen) parseRegistry(chosen.value, chosen.source);
}

/** Returns the index kind that --index or MODAL_IMAGE_INDEX sets, if either does. */
export function indexKindOption(options: CommandOptions): "local" | "registry" | undefined {
  const env = options.env ?? process.env;
  if (options.index !== undefined) return checkIndexKind(options.index, "--index value");
  if (env.MODAL_IMAGE_INDEX) return checkIndexKind(env.MODAL_IMAGE_INDEX, "MODAL_IMAGE_INDEX");
  return undefined;
}

/** Returns whether opening the index needs the config's `index` or `registry` setting. */
export function needsConfigSettings(
  options: CommandOptions,
  kind: "local" | "registry" | undefined,
): boolean {
  return kind === undefined || (kind === "registry" && !chooseRegistryText(options, {}));
}
