// A small Engine API client for the quick read-only queries of a build that finds its image:
// loading dockerode and docker-modem, about 30 ms, takes longer than the whole query.
// It serves only a daemon on a local Unix socket; for any other DOCKER_HOST it returns
// undefined and the caller uses dockerode, which handles TCP, TLS and SSH.
import { existsSync } from "node:fs";
import { request } from "node:http";
import os from "node:os";
import path from "node:path";
import { OperationError } from "../errors.js";
import { toDaemonConnectionError } from "./connection.js";

/** Time allowed for one query before it fails, so that a stuck daemon cannot hang a build. */
const queryTimeoutMs = 30_000;

/**
 * Returns the Unix socket the daemon listens on, chosen as dockerode would choose it, or
 * undefined when DOCKER_HOST names another kind of address.
 */
export function localDaemonSocket(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const host = env.DOCKER_HOST;
  if (host) return host.startsWith("unix://") && host.length > 7 ? host.slice(7) : undefined;
  if (process.platform === "win32") return undefined;
  const candidates = ["/var/run/docker.sock", path.join(os.homedir(), ".docker/run/docker.sock")];
  return candidates.find((candidate) => existsSync(candidate));
}

/**
 * Sends `GET path` to the daemon on `socketPath` and returns the parsed JSON response. A status
 * other than 200 throws an OperationError with the daemon's message.
 */
export async function getEngineJson(
  socketPath: string,
  requestPath: string,
  action: string,
): Promise<unknown> {
  const { status, body } = await get(socketPath, requestPath).catch((error: unknown) => {
    throw toDaemonConnectionError(error) ?? failure(action, String(error), error);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw failure(action, `the daemon responded ${status} with a body that is not JSON`, error);
  }
  if (status !== 200) {
    const message = (parsed as { message?: unknown } | null)?.message;
    throw failure(action, typeof message === "string" ? message : `HTTP ${status}`);
  }
  return parsed;
}

function failure(action: string, reason: string, cause?: unknown): OperationError {
  return new OperationError(`${action} failed: ${reason}`, cause === undefined ? {} : { cause });
}

function get(socketPath: string, requestPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ socketPath, path: requestPath, method: "GET" }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", reject);
      response.on("end", () => {
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
      });
    });
    outgoing.setTimeout(queryTimeoutMs, () => {
      outgoing.destroy(new Error(`no response from the daemon within ${queryTimeoutMs / 1000} s`));
    });
    outgoing.on("error", reject);
    outgoing.end();
  });
}
