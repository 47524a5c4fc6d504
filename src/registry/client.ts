import { Readable } from "node:stream";
import { dockerConfigPath, resolveRegistryAuth, type RegistryAuth } from "../docker/auth.js";
import { InterruptedError, OperationError } from "../errors.js";
import { isDigest } from "../names.js";
import { basicAuthorization, fetchToken, forgetToken, parseChallenges } from "./auth.js";
import {
  describeCause,
  describeRequest,
  httpError,
  insecureRegistriesVariable,
  registryBaseUrl,
  requestLogged,
  type HttpRequest,
  type HttpResponse,
  type RequestLabel,
} from "./http.js";
import {
  baseMediaType,
  manifestAccept,
  manifestMediaType,
  sha256Digest,
  type Descriptor,
} from "./manifest.js";

export interface RegistryClientOptions {
  /** Environment for Docker config lookup and MODAL_IMAGE_INSECURE_REGISTRIES. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Entries per page (`n`) for tag and catalog lists. @default the registry's own page size */
  pageSize?: number;
  /** Time limit of each request other than a blob transfer, in milliseconds. @default 60000 */
  requestTimeoutMs?: number;
  /** Aborts every request in flight, which then throws an InterruptedError. */
  signal?: AbortSignal;
}

/** A manifest's digest and media type, from a HEAD request. */
export interface ManifestHead {
  digest: string;
  mediaType: string;
}

/** A manifest's exact bytes, with the digest of those bytes. */
export interface ManifestContent extends ManifestHead {
  bytes: Buffer;
}

/** Outcome of a blob copy: already present, mounted from another repository, or uploaded. */
export type BlobCopy = "present" | "mounted" | "uploaded";

/** The repository a blob is copied from, on this client's registry or another. */
export interface BlobSource {
  client: RegistryClient;
  repository: string;
}

type AuthScheme =
  | { kind: "none" }
  | { kind: "basic" }
  | { kind: "bearer"; realm: string; service: string | undefined };

interface SendOptions {
  method: string;
  /** A path such as `/v2/...`, or a URL the registry returned (Location, Link). */
  url: string | URL;
  /** Token scopes the request needs, such as `repository:team/app:pull`. */
  scopes: readonly string[];
  headers?: Record<string, string>;
  body?: Uint8Array | Readable;
  /** Statuses returned to the caller; any other status throws an OperationError. */
  expected: readonly number[];
  /** Whether a timeout applies; off for blob transfers, whose size has no limit. @default true */
  timeout?: boolean;
}

const defaultRequestTimeoutMs = 60_000;
const maxPages = 10_000;

export const pullScope = (repository: string) => `repository:${repository}:pull`;
export const pushScope = (repository: string) => `repository:${repository}:pull,push`;
const catalogScope = "registry:catalog:*";

/**
 * A minimal client for the OCI distribution API of one registry host, over node:http and node:https.
 * It authenticates on demand: after a 401 it reads `WWW-Authenticate` and retries once with
 * Basic credentials from the Docker config, or with a bearer token from the challenge's realm.
 */
export class RegistryClient {
  readonly host: string;
  readonly baseUrl: URL;
  private readonly env: NodeJS.ProcessEnv;
  private readonly pageSize: number | undefined;
  private readonly requestTimeoutMs: number;
  private readonly signal: AbortSignal | undefined;
  private scheme: AuthScheme = { kind: "none" };
  private credentials: Promise<RegistryAuth | undefined> | undefined;

  constructor(host: string, options: RegistryClientOptions = {}) {
    this.host = host;
    this.env = options.env ?? process.env;
    this.baseUrl = registryBaseUrl(host, this.env);
    this.pageSize = options.pageSize;
    this.requestTimeoutMs = options.requestTimeoutMs ?? defaultRequestTimeoutMs;
    this.signal = options.signal;
  }

  /**
   * Sends `GET /v2/`, the distribution API's version check, with the credentials from the
   * Docker config when the registry responds 401. Throws an OperationError when the registry is
   * unreachable, fails or rejects the credentials.
   */
  async checkApi(): Promise<void> {
    const response = await this.send({ method: "GET", url: "/v2/", scopes: [], expected: [200] });
    response.discard();
  }

  /**
   * Returns a manifest's digest and media type, or undefined when the registry has none.
   * Uses `Docker-Content-Digest` from HEAD, or GET and the sha256 of the body when the
   * header is missing. The digest of a multi-platform index is the index's own.
   */
  async headManifest(repository: string, reference: string): Promise<ManifestHead | undefined> {
    const response = await this.send({
      method: "HEAD",
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [pullScope(repository)],
      headers: { accept: manifestAccept },
      expected: [200, 404],
    });
    if (response.status === 404) return undefined;
    const digest = response.headers.get("docker-content-digest");
    const contentType = response.headers.get("content-type");
    if (digest && isDigest(digest)) return { digest, mediaType: baseMediaType(contentType) };
    const manifest = await this.getManifest(repository, reference);
    return manifest && { digest: manifest.digest, mediaType: manifest.mediaType };
  }

  /** Returns a manifest's exact bytes, or undefined when the registry has none. */
  async getManifest(repository: string, reference: string): Promise<ManifestContent | undefined> {
    const label = `/v2/${repository}/manifests/${reference}`;
    const response = await this.send({
      method: "GET",
      url: label,
      scopes: [pullScope(repository)],
      headers: { accept: manifestAccept },
      expected: [200, 404],
    });
    if (response.status === 404) {
      response.discard();
      return undefined;
    }
    const bytes = await response.bytes();
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw new OperationError(
        `registry ${this.host}: GET ${label} returned a manifest whose digest is ${digest}`,
        { hint: "the registry's content is corrupt or a proxy changed it; check the registry" },
      );
    }
    const mediaType = manifestMediaType(response.headers.get("content-type"), bytes);
    return { digest, mediaType, bytes };
  }

  /** Uploads manifest bytes under a tag or digest and returns the digest the registry stored. */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
  ): Promise<string> {
    const response = await this.send({
      method: "PUT",
      url: `/v2/${repository}/manifests/${reference}`,
      scopes: [pushScope(repository)],
      headers: { "content-type": mediaType },
      body: bytes,
      expected: [201],
    });
    response.discard();
    return response.headers.get("docker-content-digest") ?? sha256Digest(bytes);
  }

  /** Deletes a manifest by digest, which also removes every tag that points at it. */
  async deleteManifest(repository: string, digest: string): Promise<void> {
    const response = await this.send({
      method: "DELETE",
      url: `/v2/${repository}/manifests/${digest}`,
      scopes: [`repository:${repository}:delete`],
      expected: [202],
    });
    response.discard();
  }

  /** Lists a repository's tags across all pages; an unknown repository has none. */
  async listTags(repository: string): Promise<string[]> {
    return this.listPages(`/v2/${repository}/tags/list`, "tags", [pullScope(repository)]);
  }

  /** Lists every repository in the registry's catalog, across all pages. */
  async listRepositories(): Promise<string[]> {
    return this.listPages("/v2/_catalog", "repositories", [catalogScope]);
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const response = await this.send({
      method: "HEAD",
      url: `/v2/${repository}/blobs/${digest}`,
      scopes: [pullScope(repository)],
      expected: [200, 404],
    });
    return response.status === 200;
  }

  /** Uploads a small blob in one request (POST, then PUT with the digest). */
  async uploadBlob(repository: string, digest: string, bytes: Uint8Array): Promise<void> {
    const location = await this.startUpload(repository, `/v2/${repository}/blobs/uploads/`);
    await this.finishUpload(repository, location, digest, bytes, bytes.length);
  }

  /**
   * Makes a blob available in `repository`. Within one registry it requests a cross-repository
   * mount, and streams the blob from the source when the registry returns 202 (no mount).
   * From another registry it always streams.
   */
  async copyBlob(repository: string, blob: Descriptor, source: BlobSource): Promise<BlobCopy> {
    if (await this.hasBlob(repository, blob.digest)) return "present";
    if (source.client.baseUrl.origin === this.baseUrl.origin) {
      return this.mountBlob(repository, blob.digest, source.repository);
    }
    const location = await this.startUpload(repository, `/v2/${repository}/blobs/uploads/`);
    await this.streamUpload(repository, location, blob.digest, source);
    return "uploaded";
  }

  /** Mounts a blob from another repository on this registry, or streams it on a 202. */
  async mountBlob(repository: string, digest: string, from: string): Promise<BlobCopy> {
    const query = new URLSearchParams({ mount: digest, from });
    const response = await this.send({
      method: "POST",
      url: `/v2/${repository}/blobs/uploads/?${query.toString()}`,
      scopes: [pushScope(repository), pullScope(from)],
      expected: [201, 202],
    });
    response.discard();
    if (response.status === 201) return "mounted";
    const location = this.locationOf(response, "POST", `/v2/${repository}/blobs/uploads/`);
    await this.streamUpload(repository, location, digest, { client: this, repository: from });
    return "uploaded";
  }

  /** Opens a blob for reading; the caller consumes or cancels the body. */
  async openBlob(repository: string, digest: string): Promise<HttpResponse> {
    return this.send({
      method: "GET",
      url: `/v2/${repository}/blobs/${digest}`,
      scopes: [pullScope(repository)],
      expected: [200],
      timeout: false,
    });
  }

  private async streamUpload(
    repository: string,
    location: URL,
    digest: string,
    source: BlobSource,
  ): Promise<void> {
    const blob = await source.client.openBlob(source.repository, digest);
    const length = Number(blob.headers.get("content-length") ?? Number.NaN);
    if (!blob.body)
      throw new OperationError(`registry ${source.client.host}: blob ${digest} has no body`);
    await this.finishUpload(repository, location, digest, blob.body, length);
  }

  private async startUpload(repository: string, path: string): Promise<URL> {
    const response = await this.send({
      method: "POST",
      url: path,
      scopes: [pushScope(repository)],
      expected: [202],
    });
    response.discard();
    return this.locationOf(response, "POST", path);
  }

  private async finishUpload(
    repository: string,
    location: URL,
    digest: string,
    body: Uint8Array | Readable,
    length: number,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set("digest", digest);
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (Number.isFinite(length)) headers["content-length"] = String(length);
    const response = await this.send({
      method: "PUT",
      url,
      scopes: [pushScope(repository)],
      headers,
      body,
      expected: [201],
      timeout: !(body instanceof Readable),
    });
    response.discard();
  }

  private locationOf(response: HttpResponse, method: string, path: string): URL {
    const location = response.headers.get("location");
    if (!location) {
      throw new OperationError(
        `${describeRequest({ host: this.host, method, url: new URL(path, this.baseUrl) })} returned no Location header`,
        { hint: "the registry does not follow the distribution API; check its version" },
      );
    }
    return new URL(location, this.baseUrl);
  }

  /** Follows `Link: <...>; rel="next"` until the last page and concatenates `key` of each page. */
  private async listPages(
    path: string,
    key: "tags" | "repositories",
    scopes: readonly string[],
  ): Promise<string[]> {
    let url: URL | undefined = new URL(path, this.baseUrl);
    if (this.pageSize !== undefined) url.searchParams.set("n", String(this.pageSize));
    const items: string[] = [];
    for (let page = 0; url; page++) {
      if (page >= maxPages) {
        throw new OperationError(
          `registry ${this.host}: GET ${path} returned more than ${maxPages} pages`,
          { hint: "the registry's Link headers may loop; check its version" },
        );
      }
      const response = await this.send({ method: "GET", url, scopes, expected: [200, 404] });
      if (response.status === 404) {
        response.discard();
        return items;
      }
      const body = (await response.json()) as Record<string, unknown> | null;
      const values = body?.[key];
      if (Array.isArray(values)) {
        items.push(...values.filter((value): value is string => typeof value === "string"));
      }
      const next = nextLink(response.headers.get("link"));
      url = next === undefined ? undefined : new URL(next, url);
    }
    return items;
  }

  /**
   * Sends one request, with auth for the registry's own origin only. After a 401 the challenge
   * picks Basic or Bearer, and the request is sent once more. A request with a streamed body
   * cannot be sent again, so it relies on auth that an earlier request set up.
   */
  private async send(options: SendOptions): Promise<HttpResponse> {
    const url = typeof options.url === "string" ? new URL(options.url, this.baseUrl) : options.url;
    const label: RequestLabel = { host: this.host, method: options.method, url };
    const sameOrigin = url.origin === this.baseUrl.origin;
    const streamed = options.body instanceof Readable;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(options.headers ?? {})) {
        headers[name.toLowerCase()] = value;
      }
      const authorization = sameOrigin ? await this.authorization(options.scopes) : undefined;
      if (authorization) headers.authorization = authorization;
      const response = await this.request(label, {
        method: options.method,
        headers,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...this.abortSignal(options.timeout !== false),
      });
      if (response.status === 401 && sameOrigin && attempt === 1 && !streamed) {
        await this.applyChallenge(label, response, options.scopes);
        continue;
      }
      if (options.expected.includes(response.status)) return response;
      // A failure to load credentials here must not leave the response unread.
      const credentials =
        response.status === 401 && attempt > 1
          ? await this.loadCredentials().catch(() => undefined)
          : undefined;
      if (credentials) {
        const file = dockerConfigPath(this.env);
        const hint = `the registry rejected the credentials that ${file} gives for ${this.host}; log in again with: docker login ${this.host}`;
        throw await httpError(label, response, hint);
      }
      throw await httpError(label, response);
    }
  }

  /**
   * Returns the `signal` option of a request: the caller's signal, the timeout, both or neither.
   * NOTE: the signal applies to the response body too, so an abort while a caller reads a body
   * throws an AbortError (exit 1) instead of an InterruptedError.
   */
  private abortSignal(timeout: boolean): { signal?: AbortSignal } {
    const signals = [
      ...(this.signal ? [this.signal] : []),
      ...(timeout ? [AbortSignal.timeout(this.requestTimeoutMs)] : []),
    ];
    if (signals.length === 0) return {};
    return { signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals) };
  }

  private async request(label: RequestLabel, init: HttpRequest): Promise<HttpResponse> {
    try {
      return await requestLogged(`registry ${this.host}`, label.url, init);
    } catch (error) {
      if (this.signal?.aborted) {
        throw new InterruptedError(`${describeRequest(label)} interrupted`, { cause: error });
      }
      const hint =
        this.baseUrl.protocol === "https:"
          ? `check that the registry is running and reachable; for a registry without TLS, list ${this.host} in ${insecureRegistriesVariable}`
          : `check that the registry is running and reachable at ${this.baseUrl.origin}`;
      throw new OperationError(`${describeRequest(label)} failed: ${describeCause(error)}`, {
        hint,
        cause: error,
      });
    }
  }

  /** Reads a 401's challenge and chooses how the next request authenticates. */
  private async applyChallenge(
    label: RequestLabel,
    response: HttpResponse,
    scopes: readonly string[],
  ): Promise<void> {
    const challenges = parseChallenges(response.headers.get("www-authenticate") ?? "");
    const bearer = challenges.find((challenge) => challenge.scheme === "bearer");
    const realm = bearer?.params.realm;
    const basic = challenges.some((challenge) => challenge.scheme === "basic");
    // Released before anything else can fail, so that its connection does not stay busy.
    if ((bearer && realm) || basic) response.discard();
    if (bearer && realm) {
      this.scheme = { kind: "bearer", realm, service: bearer.params.service };
      // A cached token the registry refused is no use for the retry.
      forgetToken(await this.tokenRequest(realm, bearer.params.service, scopes));
      return;
    }
    if (basic) {
      const auth = await this.loadCredentials();
      if (auth && basicAuthorization(auth)) {
        this.scheme = { kind: "basic" };
        return;
      }
      throw new OperationError(
        `${describeRequest(label)} failed with HTTP 401: the registry requires a login, and the Docker config has no credentials for ${this.host}`,
        { hint: `log in with: docker login ${this.host}` },
      );
    }
    throw await httpError(label, response);
  }

  private async authorization(scopes: readonly string[]): Promise<string | undefined> {
    const scheme = this.scheme;
    if (scheme.kind === "basic") {
      const auth = await this.loadCredentials();
      return auth ? basicAuthorization(auth) : undefined;
    }
    if (scheme.kind === "bearer") {
      const token = await fetchToken(await this.tokenRequest(scheme.realm, scheme.service, scopes));
      return `Bearer ${token}`;
    }
    return undefined;
  }

  private async tokenRequest(
    realm: string,
    service: string | undefined,
    scopes: readonly string[],
  ) {
    return { host: this.host, realm, service, scopes, auth: await this.loadCredentials() };
  }

  private loadCredentials(): Promise<RegistryAuth | undefined> {
    this.credentials ??= resolveRegistryAuth(this.host, this.env);
    return this.credentials;
  }
}

/** Returns the target of the `rel="next"` link in a `Link` header, if there is one. */
export function nextLink(header: string | null): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (match && /;\s*rel="?next"?\s*(?:;|$)/i.test(match[2] ?? "")) return match[1];
  }
  return undefined;
}
