import { isIP } from "node:net";
import { logRequest } from "../debug-log.js";
import { OperationError } from "../errors.js";

/** Comma-separated `host[:port]` list of registries reached over plain HTTP. */
export const insecureRegistriesVariable = "MODAL_IMAGE_INSECURE_REGISTRIES";

/**
 * Returns the base URL of a registry. Like Docker, plain HTTP is used for `localhost`,
 * 127.0.0.0/8 and ::1, and for hosts listed in MODAL_IMAGE_INSECURE_REGISTRIES (with or
 * without the port); HTTPS for every other host.
 */
export function registryBaseUrl(host: string, env: NodeJS.ProcessEnv = process.env): URL {
  const scheme = isInsecure(host, env) ? "http" : "https";
  return new URL(`${scheme}://${host}`);
}

function isInsecure(host: string, env: NodeJS.ProcessEnv): boolean {
  const hostname = hostnameOf(host);
  if (hostname === "localhost" || hostname === "::1") return true;
  if (isIP(hostname) === 4 && hostname.startsWith("127.")) return true;
  const listed = (env[insecureRegistriesVariable] ?? "")
    .split(",")
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== "");
  return listed.includes(host.toLowerCase()) || listed.includes(hostname);
}

/** Returns the host name without port or IPv6 brackets. */
export function hostnameOf(host: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) return (bracketed[1] ?? "").toLowerCase();
  return host.replace(/:\d+$/, "").toLowerCase();
}

/** One entry of a registry's JSON error body, as the distribution spec defines it. */
interface RegistryErrorEntry {
  code?: unknown;
  message?: unknown;
}

/** Reads `CODE: message` pairs from a registry's `{"errors": [...]}` body. */
export async function readRegistryErrors(response: Response): Promise<string[]> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    return [];
  }
  const errors = (body as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return [];
  return errors.map((entry: RegistryErrorEntry) => {
    const code = typeof entry.code === "string" ? entry.code : "UNKNOWN";
    return typeof entry.message === "string" && entry.message !== ""
      ? `${code}: ${entry.message}`
      : code;
  });
}

/** The host, method and URL of a request, for messages. Messages leave out the query, since upload URLs carry state. */
export interface RequestLabel {
  host: string;
  method: string;
  url: URL;
}

export function describeRequest(label: RequestLabel): string {
  return `registry ${label.host}: ${label.method} ${label.url.pathname}`;
}

/**
 * Turns an unexpected response into an OperationError with the registry's error codes, and a
 * hint for its status unless the caller gives one.
 */
export async function httpError(
  label: RequestLabel,
  response: Response,
  hint = hintFor(label.host, response.status),
): Promise<OperationError> {
  const errors = label.method === "HEAD" ? [] : await readRegistryErrors(response);
  await response.body?.cancel().catch(() => undefined);
  const detail = errors.length > 0 ? `: ${errors.join("; ")}` : "";
  const message = `${describeRequest(label)} failed with HTTP ${response.status}${detail}`;
  return new OperationError(message, { hint });
}

function hintFor(host: string, status: number): string | undefined {
  if (status === 401) return `log in with: docker login ${host}`;
  if (status === 403) {
    return `the account in the Docker config may not access this repository; log in as another user with: docker login ${host}`;
  }
  if (status === 429) return "the registry is rate limiting requests; wait, then retry";
  if (status >= 500) return "the registry failed; check its logs, then retry";
  return undefined;
}

/** Describes a fetch failure by its cause's code, such as ECONNREFUSED. */
export function describeCause(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code ? `${code} (${cause.message})` : cause.message;
  }
  return String(cause);
}

/**
 * Sends a request with fetch. With --debug it logs the method, path (without the query, which
 * may carry upload state), status or failure and duration, under `subject`.
 */
export async function fetchLogged(subject: string, url: URL, init: RequestInit): Promise<Response> {
  const method = init.method ?? "GET";
  const startedAt = performance.now();
  try {
    const response = await fetch(url, init);
    logRequest(subject, method, url.pathname, response.status, startedAt);
    return response;
  } catch (error) {
    logRequest(subject, method, url.pathname, `failed: ${describeCause(error)}`, startedAt);
    throw error;
  }
}
