import type { IncomingMessage } from "node:http";
import type Docker from "dockerode";
import { OperationError } from "../errors.js";
import { connectDocker, toDaemonConnectionError } from "./client.js";
import { isRecord } from "./progress.js";

/** The daemon's versions, default builder and insecure registries, from `/_ping`, `/version` and `/info`. */
export interface DaemonInfo {
  /** The engine's version, such as `20.10.24+dfsg1`. */
  version: string;
  apiVersion: string;
  os: string;
  arch: string;
  /** The `Builder-Version` header of `/_ping`: `2` when BuildKit is the default builder, `1` for the classic builder, empty when the daemon sends none. */
  builderVersion: string;
  /** Registries the daemon reaches over plain HTTP: `insecure-registries` CIDRs and host names. */
  insecureRegistryCidrs: string[];
  insecureRegistryHosts: string[];
}

/** Returns the daemon address in DOCKER_HOST form, as dockerode reads it. */
export function dockerHost(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST || "unix:///var/run/docker.sock";
}

/**
 * Sends a GET to the Engine API through dockerode's modem, which takes an abort signal where
 * the typed `version()` and `info()` do not. With `stream`, returns the response itself, whose
 * headers dockerode's `ping()` would drop; otherwise the parsed JSON body.
 */
function get(docker: Docker, path: string, signal: AbortSignal, stream: boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      {
        path,
        method: "GET",
        isStream: stream,
        statusCodes: { 200: true },
        options: {},
        abortSignal: signal,
      },
      // docker-modem 5 passes an Error, or null on success.
      (error: Error | null, result: unknown) => (error ? reject(error) : resolve(result)),
    );
  });
}

async function builderVersionOf(docker: Docker, signal: AbortSignal): Promise<string> {
  const response = (await get(docker, "/_ping", signal, true)) as IncomingMessage;
  response.resume();
  const header = response.headers["builder-version"];
  return typeof header === "string" ? header : "";
}

function stringField(record: unknown, key: string): string {
  const value = isRecord(record) ? record[key] : undefined;
  return typeof value === "string" ? value : "";
}

function insecureHosts(info: unknown): string[] {
  const registryConfig = isRecord(info) ? info.RegistryConfig : undefined;
  const indexConfigs = isRecord(registryConfig) ? registryConfig.IndexConfigs : undefined;
  if (!isRecord(indexConfigs)) return [];
  return Object.entries(indexConfigs)
    .filter(([, config]) => isRecord(config) && config.Secure === false)
    .map(([host]) => host);
}

function insecureCidrs(info: unknown): string[] {
  const registryConfig = isRecord(info) ? info.RegistryConfig : undefined;
  const cidrs = isRecord(registryConfig) ? registryConfig.InsecureRegistryCIDRs : undefined;
  return Array.isArray(cidrs)
    ? cidrs.filter((cidr): cidr is string => typeof cidr === "string")
    : [];
}

/**
 * Asks the daemon at DOCKER_HOST for its version, API version, default builder and insecure
 * registries. Fails with an OperationError after `timeoutMs`, so a daemon that accepts the
 * connection but never responds cannot hang the caller.
 */
export async function readDaemonInfo(timeoutMs: number): Promise<DaemonInfo> {
  const docker = connectDocker();
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const builderVersion = await builderVersionOf(docker, signal);
    const [version, info] = await Promise.all([
      get(docker, "/version", signal, false),
      get(docker, "/info", signal, false),
    ]);
    return {
      version: stringField(version, "Version"),
      apiVersion: stringField(version, "ApiVersion"),
      os: stringField(version, "Os"),
      arch: stringField(version, "Arch"),
      builderVersion,
      insecureRegistryCidrs: insecureCidrs(info),
      insecureRegistryHosts: insecureHosts(info),
    };
  } catch (error) {
    if (signal.aborted) {
      throw new OperationError(
        `the Docker daemon at ${dockerHost()} did not respond within ${timeoutMs / 1000} s`,
        {
          hint: "check that the daemon is running and not overloaded, or set DOCKER_HOST",
          cause: error,
        },
      );
    }
    throw (
      toDaemonConnectionError(error) ??
      new OperationError(`the Docker daemon at ${dockerHost()} failed: ${String(error)}`, {
        cause: error,
      })
    );
  }
}
