import { checkBaseImages, checkDaemon } from "../doctor/daemon-check.js";
import type { DoctorCheck } from "../doctor/check.js";
import { checkConfig } from "../doctor/config-check.js";
import { checkIndex } from "../doctor/index-check.js";
import { checkCredentials, checkRegistry } from "../doctor/registry-check.js";
import { parseRegistry, type RegistryLocation } from "../names.js";
import { checkIndexKind, chooseRegistryText, type ConfigSettings } from "./index-choice.js";
import type { CommandOptions } from "./options.js";

export type { DoctorCheck } from "../doctor/check.js";

/** Checks the --index and --registry values, which are usage errors rather than findings. */
function checkOptionValues(options: CommandOptions): void {
  if (options.index !== undefined) checkIndexKind(options.index, "--index value");
  if (options.registry !== undefined) parseRegistry(options.registry, "--registry value");
}

/** Returns the registry to check, or a failed check when MODAL_IMAGE_REGISTRY is invalid. */
function chooseRegistry(
  options: CommandOptions,
  settings: ConfigSettings,
): { location: RegistryLocation | undefined; problem: DoctorCheck | undefined } {
  const chosen = chooseRegistryText(options, settings);
  if (!chosen) return { location: undefined, problem: undefined };
  try {
    return { location: parseRegistry(chosen.value, chosen.source), problem: undefined };
  } catch (error) {
    const problem: DoctorCheck = {
      check: "registry",
      status: "fail",
      finding: (error as Error).message,
      fix: `set ${chosen.source} to HOST[:PORT][/PATH], such as 127.0.0.1:5000/team`,
    };
    return { location: undefined, problem };
  }
}

/**
 * Checks the config, the Docker daemon, the base images, the registry, its credentials and the
 * name index, and returns one finding for each, in that order. Every request has a time limit
 * of a few seconds, so a daemon or registry that is down makes a check fail instead of hanging.
 */
export async function doctor(options: CommandOptions = {}): Promise<DoctorCheck[]> {
  checkOptionValues(options);
  const env = options.env ?? process.env;
  const daemonCheck = checkDaemon();
  const config = await checkConfig({
    cwd: options.cwd ?? process.cwd(),
    configPath: options.configPath,
  });
  const settings: ConfigSettings = config.config ?? {};
  const chosen = chooseRegistry(options, settings);
  const daemonInfo = daemonCheck.then((result) => result.info);

  const [daemon, baseImages, registry] = await Promise.all([
    daemonCheck,
    daemonInfo.then((info) => checkBaseImages(config.config, info)),
    chosen.problem
      ? { check: chosen.problem, probe: undefined }
      : checkRegistry(chosen.location, env, daemonInfo),
  ]);
  const [credentials, index] = await Promise.all([
    checkCredentials(registry.probe, registry.check, env),
    checkIndex({ ...options, env }, settings, registry.probe),
  ]);
  return [config.check, daemon.check, baseImages, registry.check, credentials, index];
}
