import fs from "node:fs/promises";
import path from "node:path";
import type { ConfigSettings } from "../commands/index-choice.js";
import { openIndex, type CommandOptions } from "../commands/options.js";
import { LocalIndex } from "../index-store/local.js";
import type { RegistryIndex } from "../index-store/registry.js";
import { checkTimeoutMs, failedCheck, type DoctorCheck } from "./check.js";
import type { RegistryProbe } from "./registry-check.js";

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code ?? (error instanceof Error ? error.message : String(error));
}

/** Returns the nearest directory at or above `dir` that exists. */
async function nearestExisting(dir: string): Promise<string> {
  for (let current = dir; ; current = path.dirname(current)) {
    if (await fs.stat(current).catch(() => undefined)) return current;
    if (current === path.dirname(current)) return current;
  }
}

/**
 * Checks that the local index can be read and written: lists its root and creates and removes
 * a probe directory in it. A home that does not exist yet passes when its nearest existing
 * parent is writable, because the first publish creates it.
 */
async function checkLocalIndex(index: LocalIndex): Promise<DoctorCheck> {
  const home = path.dirname(index.root);
  const details = { kind: "local", home, root: index.root };
  const fix = `fix the permissions of ${home} (the user needs read, write and execute), or point MODAL_IMAGE_HOME at a writable directory`;
  const homeStats = await fs.stat(home).catch(() => undefined);
  if (!homeStats) {
    const parent = await nearestExisting(home);
    try {
      await fs.access(parent, fs.constants.W_OK | fs.constants.X_OK);
    } catch (error) {
      const finding = `${home} does not exist, and ${parent} is not writable (${errorCode(error)})`;
      return { check: "index", status: "fail", finding, fix, details };
    }
    const finding = `local index ${index.root} does not exist yet; the first publish creates it`;
    return { check: "index", status: "ok", finding, details };
  }
  if (!homeStats.isDirectory()) {
    const finding = `MODAL_IMAGE_HOME ${home} is not a directory`;
    return {
      check: "index",
      status: "fail",
      finding,
      fix: "point MODAL_IMAGE_HOME at a directory",
      details,
    };
  }

  const rootExists = await fs.stat(index.root).catch(() => undefined);
  const probeParent = rootExists ? index.root : home;
  try {
    if (rootExists) await fs.readdir(index.root);
    const probe = await fs.mkdtemp(path.join(probeParent, ".doctor-"));
    await fs.rm(probe, { recursive: true });
  } catch (error) {
    const finding = `local index ${index.root} is not readable and writable: ${errorCode(error)} on ${probeParent}`;
    return { check: "index", status: "fail", finding, fix, details };
  }
  const finding = `local index ${index.root} is readable and writable`;
  return { check: "index", status: "ok", finding, details };
}

/**
 * Checks that the registry index can list names (the catalog) and tags. Write access is not
 * tried, because only a real publish shows it without leaving a tag behind.
 */
async function checkRegistryIndex(
  index: RegistryIndex,
  probe: RegistryProbe | undefined,
  env: NodeJS.ProcessEnv,
): Promise<DoctorCheck> {
  const { host, namespace } = index.location;
  const label = namespace ? `${host}/${namespace}` : host;
  const details = { kind: "registry", registry: label };
  if (!probe || probe.location.host !== host) {
    return {
      check: "index",
      status: "skip",
      finding: `registry index ${label}: the registry is not reachable`,
      details,
    };
  }
  const { RegistryClient } = await import("../registry/client.js");
  const client = new RegistryClient(host, { env, requestTimeoutMs: checkTimeoutMs });
  try {
    const prefix = namespace ? `${namespace}/` : "";
    const repositories = (await client.listRepositories()).filter((name) =>
      name.startsWith(prefix),
    );
    const first = repositories[0];
    const tags = first === undefined ? [] : await client.listTags(first);
    const sample = first === undefined ? "" : `; ${first} has ${tags.length} tags`;
    const finding = `registry index ${label}: the catalog lists ${repositories.length} repositories${sample}; write access shows at the first publish`;
    return {
      check: "index",
      status: "ok",
      finding,
      details: { ...details, repositories: repositories.length },
    };
  } catch (error) {
    return failedCheck(
      "index",
      error,
      `check that the account can list the catalog and tags of ${host}`,
      details,
    );
  }
}

/** Opens the name index the other commands would use and checks that it works. */
export async function checkIndex(
  options: CommandOptions,
  settings: ConfigSettings,
  probe: RegistryProbe | undefined,
): Promise<DoctorCheck> {
  let index;
  try {
    index = await openIndex(options, settings);
  } catch (error) {
    return failedCheck(
      "index",
      error,
      "set MODAL_IMAGE_INDEX or the config's index to local or registry",
    );
  }
  if (index instanceof LocalIndex) return checkLocalIndex(index);
  return checkRegistryIndex(index as RegistryIndex, probe, options.env ?? process.env);
}
