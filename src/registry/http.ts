import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { Readable } from "node:stream";
import { logRequest, skipInDaemonLog } from "../debug-log.js";
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
export async function readRegistryErrors(response: HttpResponse): Promise<string[]> {
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
  response: HttpResponse,
  hint = hintFor(label.host, response.status),
): Promise<OperationError> {
  const errors = label.method === "HEAD" ? [] : await readRegistryErrors(response);
  response.discard();
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

/** Describes a failed request by its error code, such as ECONNREFUSED, or its cause's. */
export function describeCause(error: unknown): string {
  if (isTimeout(error)) return "timed out";
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const own = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  if (own && own !== "ABORT_ERR" && error instanceof Error) return `${own} (${error.message})`;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code ? `${code} (${cause.message})` : cause.message;
  }
  return String(cause);
}

/** Reports whether a request failed because its `AbortSignal.timeout` signal fired. */
export function isTimeout(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined;
  return [error, cause].some((value) => value instanceof Error && value.name === "TimeoutError");
}

/** A request to a registry or token service. */
export interface HttpRequest {
  method?: string;
  headers?: Record<string, string>;
  /** Bytes, or a stream, which is sent once: a request with a stream body is not redirected. */
  body?: Uint8Array | string | Readable;
  signal?: AbortSignal;
  /** Follows redirects of a request without a stream body, as fetch does. @default true */
  followRedirects?: boolean;
}

/** Body size up to which discard() reads a body to reuse its connection. */
const maxDrainedBytes = 64 * 1024;

/** Redirects followed for one request before it fails. */
const maxRedirects = 5;
const redirectStatuses = new Set([301, 302, 303, 307, 308]);

/**
 * The parts of an HTTP response that the registry code reads. The body is a Node stream,
 * which the caller reads with `bytes()` or `json()`, pipes on, or releases with `discard()`.
 */
export class HttpResponse {
  readonly headers: { get(name: string): string | null };

  constructor(
    readonly body: IncomingMessage,
    private readonly method: string,
  ) {
    this.headers = {
      get: (name) => {
        const value = body.headers[name.toLowerCase()];
        return Array.isArray(value) ? value.join(", ") : (value ?? null);
      },
    };
  }

  get status(): number {
    return this.body.statusCode ?? 0;
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  async bytes(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async json(): Promise<unknown> {
    return JSON.parse((await this.bytes()).toString("utf8"));
  }

  /**
   * Releases the body unread. A short or absent body is drained, which returns the connection
   * for reuse; a longer one is cut off with its connection. A HEAD response must be drained
   * too, or its connection stays busy and keeps the process alive.
   */
  discard(): void {
    const length = Number(this.body.headers["content-length"] ?? Number.NaN);
    if (this.method === "HEAD" || length <= maxDrainedBytes) this.body.resume();
    else this.body.destroy();
  }
}

/**
 * Sends a request with node:http or node:https. fetch would do the same, but loading its
 * implementation costs about 85 ms at the first request of a process, more than a whole
 * `resolve` against a registry on the same host. With --debug it logs the method, path
 * (without the query, which may carry upload state), status or failure and duration, under
 * `subject`.
 */
export async function requestLogged(
  subject: string,
  url: URL,
  init: HttpRequest = {},
): Promise<HttpResponse> {
  let target = url;
  const headers = { ...init.headers };
  for (let redirects = 0; ; redirects++) {
    const method = init.method ?? "GET";
    const startedAt = performance.now();
    let response: HttpResponse;
    try {
      response = await send(target, { ...init, headers });
      logRequest(subject, method, target.pathname, response.status, startedAt);
    } catch (error) {
      logRequest(subject, method, target.pathname, `failed: ${describeCause(error)}`, startedAt);
      throw error;
    }
    const location = response.headers.get("location");
    const follow =
      init.followRedirects !== false &&
      !(init.body instanceof Readable) &&
      redirects < maxRedirects;
    if (!follow || !redirectStatuses.has(response.status) || location === null) return response;
    response.discard();
    const next = new URL(location, target);
    // Credentials stay with the origin they were meant for, as fetch does on a redirect.
    if (next.origin !== target.origin) delete headers.authorization;
    target = next;
  }
}

function send(url: URL, init: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const request = url.protocol === "https:" ? httpsRequest : httpRequest;
    const headers: OutgoingHttpHeaders = { ...init.headers };
    const { body } = init;
    if (
      body !== undefined &&
      !(body instanceof Readable) &&
      headers["content-length"] === undefined
    ) {
      headers["content-length"] = Buffer.byteLength(body);
    }
    const outgoing = request(
      url,
      { method: init.method ?? "GET", headers, ...(init.signal ? { signal: init.signal } : {}) },
      (message) => {
        // A HEAD response has no body to read, so it is drained at once, freeing the connection.
        if (init.method === "HEAD") message.resume();
        resolve(new HttpResponse(message, init.method ?? "GET"));
      },
    );
    skipInDaemonLog(outgoing);
    outgoing.on("error", reject);
    if (body instanceof Readable) {
      body.on("error", (error) => outgoing.destroy(error));
      body.pipe(outgoing);
    } else {
      outgoing.end(body);
    }
  });
}
