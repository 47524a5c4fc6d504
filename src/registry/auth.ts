import { createHash } from "node:crypto";
import { OperationError } from "../errors.js";
import type { RegistryAuth } from "../docker/auth.js";
import { describeCause, requestLogged, type HttpResponse } from "./http.js";

/** One challenge from a `WWW-Authenticate` header. */
export interface Challenge {
  /** Lowercase scheme, such as `basic` or `bearer`. */
  scheme: string;
  /** Parameters with lowercase names, such as `realm`, `service` and `scope`. */
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` value (RFC 7235): a scheme, then comma-separated `name=value`
 * parameters whose values may be quoted strings with backslash escapes.
 */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  const tokenRe = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)/y;
  const paramRe = /\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/y;
  let position = 0;
  while (position < header.length) {
    tokenRe.lastIndex = position;
    const scheme = tokenRe.exec(header);
    if (!scheme) break;
    position = tokenRe.lastIndex;
    const params: Record<string, string> = {};
    for (;;) {
      paramRe.lastIndex = position;
      const param = paramRe.exec(header);
      if (!param) break;
      const [, name = "", quoted, bare] = param;
      params[name.toLowerCase()] =
        quoted === undefined ? (bare ?? "") : quoted.replace(/\\(.)/g, "$1");
      position = paramRe.lastIndex;
    }
    challenges.push({ scheme: (scheme[1] ?? "").toLowerCase(), params });
    // Skip the separator before the next challenge.
    while (header[position] === "," || header[position] === " ") position += 1;
  }
  return challenges;
}

/** Returns the `Authorization` value for HTTP Basic with the given credentials. */
export function basicAuthorization(auth: RegistryAuth): string | undefined {
  if (auth.username === undefined || auth.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
}

interface CachedToken {
  token: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
}

// Tokens are cached per process, keyed by token service, scopes and a hash of the credentials.
const tokenCache = new Map<string, CachedToken>();

/** Per the Docker token spec, a token without `expires_in` lasts 60 seconds. */
const defaultTokenLifetimeSeconds = 60;
/** Tokens are renewed this long before they expire, so a request never carries a stale one. */
const tokenRenewMarginMs = 5_000;
const tokenTimeoutMs = 60_000;
/** Client ID sent with OAuth2 refresh-token requests; the Docker token spec recommends a meaningful one. */
const oauthClientId = "modal-image";

export interface TokenRequest {
  /** `host[:port]` of the registry, for error messages. */
  host: string;
  realm: string;
  service: string | undefined;
  scopes: readonly string[];
  auth: RegistryAuth | undefined;
}

/** Drops the cached token for a request, so the next `fetchToken` requests a new one. */
export function forgetToken(request: TokenRequest): void {
  tokenCache.delete(cacheKey(request));
}

/**
 * Returns a bearer token for the scopes, from the cache or the token service at `realm`.
 * With an identity token it uses the OAuth2 refresh-token grant (POST); otherwise a GET with
 * Basic credentials when there are any, or anonymously. A `registrytoken` is used as is.
 */
export async function fetchToken(request: TokenRequest): Promise<string> {
  if (request.auth?.registrytoken) return request.auth.registrytoken;
  const key = cacheKey(request);
  const cached = tokenCache.get(key);
  if (cached && cached.expiresAt > Date.now()) return cached.token;

  const realm = parseRealm(request);
  const identityToken = request.auth?.identitytoken;
  const response = await sendTokenRequest(realm, request, identityToken).catch((error: unknown) => {
    throw new OperationError(
      `registry ${request.host}: token request to ${realm.origin}${realm.pathname} failed: ${describeCause(error)}`,
      { hint: "check that the token service is reachable from this machine", cause: error },
    );
  });
  if (!response.ok) {
    response.discard();
    throw new OperationError(
      `registry ${request.host}: token request to ${realm.origin}${realm.pathname} failed with HTTP ${response.status}`,
      {
        hint:
          response.status === 401 || response.status === 403
            ? `log in with: docker login ${request.host}`
            : "check that the token service is running",
      },
    );
  }
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
  const token = typeof body.token === "string" ? body.token : body.access_token;
  if (typeof token !== "string" || token === "") {
    throw new OperationError(
      `registry ${request.host}: token service ${realm.origin}${realm.pathname} returned no token`,
      { hint: "check the registry's token service configuration" },
    );
  }
  const lifetime =
    typeof body.expires_in === "number" && body.expires_in > 0
      ? body.expires_in
      : defaultTokenLifetimeSeconds;
  tokenCache.set(key, {
    token,
    expiresAt: Date.now() + lifetime * 1000 - tokenRenewMarginMs,
  });
  return token;
}

function parseRealm(request: TokenRequest): URL {
  try {
    const realm = new URL(request.realm);
    if (realm.protocol === "https:" || realm.protocol === "http:") return realm;
  } catch {
    // Reported below.
  }
  throw new OperationError(
    `registry ${request.host} sent an invalid token realm ${JSON.stringify(request.realm)}`,
    { hint: "check the registry's auth configuration" },
  );
}

async function sendTokenRequest(
  realm: URL,
  request: TokenRequest,
  identityToken: string | undefined,
): Promise<HttpResponse> {
  const signal = AbortSignal.timeout(tokenTimeoutMs);
  if (identityToken) {
    const form = new URLSearchParams({
      grant_type: "refresh_token",
      refresh_token: identityToken,
      client_id: oauthClientId,
    });
    if (request.service) form.set("service", request.service);
    // The token spec joins several scopes with spaces in the form body.
    if (request.scopes.length > 0) form.set("scope", request.scopes.join(" "));
    return requestLogged(`token service ${realm.host}`, realm, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
      signal,
    });
  }
  const url = new URL(realm);
  if (request.service) url.searchParams.set("service", request.service);
  for (const scope of request.scopes) url.searchParams.append("scope", scope);
  const authorization = request.auth ? basicAuthorization(request.auth) : undefined;
  return requestLogged(`token service ${url.host}`, url, {
    headers: authorization ? { authorization } : {},
    signal,
  });
}

function cacheKey(request: TokenRequest): string {
  const { auth } = request;
  const identity = createHash("sha256")
    .update(JSON.stringify([auth?.username, auth?.password, auth?.identitytoken]))
    .digest("hex");
  return JSON.stringify([request.realm, request.service, [...request.scopes].sort(), identity]);
}
