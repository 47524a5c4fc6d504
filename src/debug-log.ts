/**
 * The request log that `--debug` turns on: one stderr line for each daemon and registry request,
 * with its method, path, status and duration. It never prints headers, bodies or query strings,
 * so no credential (Authorization, X-Registry-Auth, tokens, upload state in URLs) can reach it.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import type { ClientRequest, IncomingMessage } from "node:http";

let enabled = false;

/** Requests that the registry code logs itself, left out of the daemon request log. */
const registryRequests = new WeakSet<ClientRequest>();

/** Marks a node:http request that is not a daemon request, so the daemon log skips it. */
export function skipInDaemonLog(request: ClientRequest): void {
  registryRequests.add(request);
}

/** Turns the request log on for the rest of the process. */
export function enableDebugLog(): void {
  if (enabled) return;
  enabled = true;
  logDaemonRequests();
}

/**
 * Writes one request line when the log is on. `outcome` is the HTTP status, or a short text
 * for a request that got no response.
 */
export function logRequest(
  subject: string,
  method: string,
  path: string,
  outcome: number | string,
  startedAt: number,
): void {
  if (!enabled) return;
  const milliseconds = Math.round(performance.now() - startedAt);
  process.stderr.write(`debug: ${subject}: ${method} ${path} -> ${outcome} (${milliseconds} ms)\n`);
}

function pathOf(request: ClientRequest): string {
  return request.path.split("?")[0] ?? request.path;
}

/**
 * Logs the requests that dockerode sends. docker-modem 5 offers no request hook, but it sends
 * every daemon request through node:http, which publishes each one on these diagnostics
 * channels. A response is logged when it closes, so the duration of a build or push covers its
 * whole progress stream.
 *
 * NOTE: Node's docs mark these built-in channels experimental. Node 20.20 publishes all three.
 * A Node without `http.client.request.error` logs no line for a daemon it cannot reach, though
 * the error itself is still reported.
 * The registry client also uses node:http, and marks its requests with skipInDaemonLog.
 */
function logDaemonRequests(): void {
  const startTimes = new WeakMap<ClientRequest, number>();
  const startedAt = (request: ClientRequest) => startTimes.get(request) ?? performance.now();

  diagnosticsChannel.subscribe("http.client.request.start", (message) => {
    const { request } = message as { request: ClientRequest };
    startTimes.set(request, performance.now());
  });
  diagnosticsChannel.subscribe("http.client.response.finish", (message) => {
    const { request, response } = message as { request: ClientRequest; response: IncomingMessage };
    if (registryRequests.has(request)) return;
    response.once("close", () => {
      const outcome = response.complete
        ? (response.statusCode ?? "no status")
        : `${response.statusCode} cut short`;
      logRequest("docker", request.method, pathOf(request), outcome, startedAt(request));
    });
  });
  diagnosticsChannel.subscribe("http.client.request.error", (message) => {
    const { request, error } = message as { request: ClientRequest; error: Error };
    if (registryRequests.has(request)) return;
    const code = (error as NodeJS.ErrnoException).code ?? error.message;
    logRequest("docker", request.method, pathOf(request), `failed: ${code}`, startedAt(request));
  });
}
