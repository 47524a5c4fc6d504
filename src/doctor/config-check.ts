import path from "node:path";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import { findConfigFile } from "../config/settings.js";
import { UsageError } from "../errors.js";
import { failedCheck, type DoctorCheck } from "./check.js";

/**
 * Finds and validates the config: -c PATH, else the search from `cwd` upward. No config is a
 * warning, because the daemon, registry and index checks still run without one.
 */
export async function checkConfig(options: {
  cwd: string;
  configPath: string | undefined;
}): Promise<{ check: DoctorCheck; config: LoadedConfig | undefined }> {
  const file =
    options.configPath === undefined
      ? await findConfigFile(options.cwd)
      : path.resolve(options.cwd, options.configPath);
  if (file === undefined) {
    const check: DoctorCheck = {
      check: "config",
      status: "warn",
      finding: `no config file found in ${options.cwd} or any parent directory`,
      fix: "write a starter config with: modal-image init",
    };
    return { check, config: undefined };
  }

  try {
    const config = await loadConfig({ cwd: options.cwd, configPath: file });
    const keys = [...config.images.keys()];
    const check: DoctorCheck = {
      check: "config",
      status: "ok",
      finding: `${config.filepath}: ${keys.length} image${keys.length === 1 ? "" : "s"} (${keys.join(", ")})`,
      details: {
        file: config.filepath,
        images: keys,
        registry: config.registry ?? null,
        index: config.index ?? null,
      },
    };
    return { check, config };
  } catch (error) {
    const problems = error instanceof UsageError ? error.problems : [];
    const details = { file, ...(problems.length > 0 ? { problems } : {}) };
    const fix = "fix the config, then run modal-image doctor again";
    return { check: failedCheck("config", error, fix, details), config: undefined };
  }
}
