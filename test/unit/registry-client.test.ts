import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OperationError } from "../../src/errors.js";
import { parseChallenges } from "../../src/registry/auth.js";
import { RegistryClient, nextLink } from "../../src/registry/client.js";
import { registryBaseUrl } from "../../src/registry/http.js";

/** A request as a fake server saw it. */
interface SeenRequest {
  method: string;
  url: URL;
  authorization: string | undefined;
  body: Buffer;
}

interface FakeServer {
  host: string;
  requests: SeenRequest[];
}

type Handler = (request: SeenRequest, response: ServerResponse) => void;

const servers: { close(): void }[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) server.close();
  for (const dir of tempDirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

/** Starts an HTTP server on 127.0.0.1 with an ephemeral port that records every request. */
async function startServer(handler: Handler): Promise<FakeServer> {
  const requests: SeenRequest[] = [];
  const server = createServer((incoming: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
    incoming.on("end", () => {
      const request: SeenRequest = {
        method: incoming.method ?? "",
        url: new URL(incoming.url ?? "/", "http://fake"),
        authorization: incoming.headers.authorization,
        body: Buffer.concat(chunks),
      };
      requests.push(request);
      handler(request, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push({ close: () => server.close() });
  const { port } = server.address() as AddressInfo;
  return { host: `127.0.0.1:${port}`, requests };
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

/** Writes a Docker config with `auths` credentials for one host and returns the env that uses it. */
async function dockerConfigEnv(
  host: string,
  username: string,
  password: string,
): Promise<NodeJS.ProcessEnv> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-registry-client-"));
  tempDirs.push(dir);
  const auth = Buffer.from(`${username}:${password}`).toString("base64");
  await fs.writeFile(
    path.join(dir, "config.json"),
    JSON.stringify({ auths: { [host]: { auth } } }),
  );
  return { ...process.env, DOCKER_CONFIG: dir };
}

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

describe("registryBaseUrl", () => {
  it.each([
    ["127.0.0.1:5000", {}, "http:"],
    ["127.8.9.10", {}, "http:"],
    ["localhost:5000", {}, "http:"],
    ["[::1]:5000", {}, "http:"],
    ["registry.example.com", {}, "https:"],
    ["128.0.0.1:5000", {}, "https:"],
    ["registry.lan:5000", { MODAL_IMAGE_INSECURE_REGISTRIES: "other, registry.lan:5000" }, "http:"],
    ["registry.lan:5000", { MODAL_IMAGE_INSECURE_REGISTRIES: "registry.lan" }, "http:"],
    ["registry.lan:5000", { MODAL_IMAGE_INSECURE_REGISTRIES: "registry.lan:6000" }, "https:"],
  ])("uses the right scheme for %s", (host, env, protocol) => {
    expect(registryBaseUrl(host, env).protocol).toBe(protocol);
  });
});

describe("registry header parsing", () => {
  it("parses a bearer challenge with commas in quoted values", () => {
    const [challenge] = parseChallenges(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push"',
    );
    expect(challenge?.scheme).toBe("bearer");
    expect(challenge?.params).toEqual({
      realm: "https://auth.example.com/token",
      service: "registry.example.com",
      scope: "repository:team/app:pull,push",
    });
  });

  it("parses a basic challenge", () => {
    expect(parseChallenges('Basic realm="modal-image-test"')).toEqual([
      { scheme: "basic", params: { realm: "modal-image-test" } },
    ]);
  });

  it.each([
    ['</v2/_catalog?last=b&n=2>; rel="next"', "/v2/_catalog?last=b&n=2"],
    [
      "<https://r.example.com/v2/x/tags/list?last=a>; rel=next",
      "https://r.example.com/v2/x/tags/list?last=a",
    ],
    ['</first>; rel="prev", </second>; rel="next"', "/second"],
    ['</only>; rel="prev"', undefined],
    [null, undefined],
  ])("reads the next link from %j", (header, expected) => {
    expect(nextLink(header)).toBe(expected);
  });
});

describe("RegistryClient lists", () => {
  it("follows Link pagination across 3 pages", async () => {
    const all = ["a", "b", "c", "d", "e"];
    const server = await startServer((request, response) => {
      const n = Number(request.url.searchParams.get("n"));
      const last = request.url.searchParams.get("last");
      const start = last ? all.indexOf(last) + 1 : 0;
      const page = all.slice(start, start + n);
      const headers: Record<string, string> = {};
      if (start + n < all.length) {
        headers.link = `</v2/team/app/tags/list?last=${page.at(-1)}&n=${n}>; rel="next"`;
      }
      sendJson(response, 200, { name: "team/app", tags: page }, headers);
    });
    const client = new RegistryClient(server.host, { pageSize: 2 });
    expect(await client.listTags("team/app")).toEqual(all);
    expect(server.requests).toHaveLength(3);
    expect(server.requests.map((request) => request.url.searchParams.get("n"))).toEqual([
      "2",
      "2",
      "2",
    ]);
    expect(server.requests.map((request) => request.url.searchParams.get("last"))).toEqual([
      null,
      "b",
      "d",
    ]);
  });

  it("returns no tags for an unknown repository", async () => {
    const server = await startServer((_request, response) => {
      sendJson(response, 404, { errors: [{ code: "NAME_UNKNOWN", message: "unknown" }] });
    });
    expect(await new RegistryClient(server.host).listTags("team/none")).toEqual([]);
  });
});

describe("RegistryClient manifests", () => {
  // Unusual spacing, so a digest of re-serialised JSON would differ from the digest of the bytes.
  const manifest = Buffer.from(
    '{ "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [] }\n',
  );

  it("falls back to GET and sha256 of the exact bytes without Docker-Content-Digest", async () => {
    const server = await startServer((request, response) => {
      response.writeHead(200, { "content-type": "application/vnd.oci.image.index.v1+json" });
      response.end(request.method === "HEAD" ? undefined : manifest);
    });
    const head = await new RegistryClient(server.host).headManifest("team/app", "latest");
    expect(head?.digest).toBe(sha256(manifest));
    expect(head?.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(server.requests.map((request) => request.method)).toEqual(["HEAD", "GET"]);
  });

  it("uses Docker-Content-Digest from HEAD when present", async () => {
    const digest = sha256(manifest);
    const server = await startServer((_request, response) => {
      response.writeHead(200, {
        "content-type": "application/vnd.oci.image.index.v1+json",
        "docker-content-digest": digest,
      });
      response.end();
    });
    const head = await new RegistryClient(server.host).headManifest("team/app", "latest");
    expect(head?.digest).toBe(digest);
    expect(server.requests.map((request) => request.method)).toEqual(["HEAD"]);
  });

  it("returns undefined for a missing manifest", async () => {
    const server = await startServer((_request, response) => {
      response.writeHead(404);
      response.end();
    });
    expect(await new RegistryClient(server.host).headManifest("team/app", "v9")).toBeUndefined();
  });

  it("surfaces the registry's JSON error codes", async () => {
    const server = await startServer((_request, response) => {
      sendJson(response, 400, {
        errors: [
          { code: "MANIFEST_INVALID", message: "manifest invalid", detail: {} },
          { code: "MANIFEST_BLOB_UNKNOWN", message: "blob unknown to registry" },
        ],
      });
    });
    const client = new RegistryClient(server.host);
    const error = await client
      .putManifest("team/app", "v1", manifest, "application/vnd.oci.image.index.v1+json")
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationError);
    const message = (error as OperationError).message;
    expect(message).toContain(`registry ${server.host}`);
    expect(message).toContain("PUT /v2/team/app/manifests/v1");
    expect(message).toContain("HTTP 400");
    expect(message).toContain("MANIFEST_INVALID: manifest invalid");
    expect(message).toContain("MANIFEST_BLOB_UNKNOWN: blob unknown to registry");
  });
});

describe("RegistryClient auth", () => {
  it("sends Basic credentials after a challenge", async () => {
    const server = await startServer((request, response) => {
      if (request.authorization !== basic("alice", "pw-basic")) {
        sendJson(
          response,
          401,
          { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] },
          { "www-authenticate": 'Basic realm="fake"' },
        );
        return;
      }
      sendJson(response, 200, { name: "team/app", tags: ["v1"] });
    });
    const env = await dockerConfigEnv(server.host, "alice", "pw-basic");
    const client = new RegistryClient(server.host, { env });
    expect(await client.listTags("team/app")).toEqual(["v1"]);
    expect(await client.listTags("team/app")).toEqual(["v1"]);
    expect(server.requests.map((request) => request.authorization)).toEqual([
      undefined,
      basic("alice", "pw-basic"),
      basic("alice", "pw-basic"),
    ]);
  });

  it("fetches a bearer token with service and scope", async () => {
    const tokenServer = await startServer((_request, response) => {
      sendJson(response, 200, { token: "token-1", expires_in: 300 });
    });
    const registry = await startServer((request, response) => {
      if (request.authorization !== "Bearer token-1") {
        sendJson(
          response,
          401,
          { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] },
          {
            "www-authenticate": `Bearer realm="http://${tokenServer.host}/token",service="fake-registry",scope="repository:team/app:pull"`,
          },
        );
        return;
      }
      sendJson(response, 200, { name: "team/app", tags: ["v1"] });
    });
    const env = await dockerConfigEnv(registry.host, "bob", "pw-bearer");
    const client = new RegistryClient(registry.host, { env });
    expect(await client.listTags("team/app")).toEqual(["v1"]);
    expect(await client.listTags("team/app")).toEqual(["v1"]);

    // One token request: the second list reuses the cached token.
    expect(tokenServer.requests).toHaveLength(1);
    const tokenRequest = tokenServer.requests[0]!;
    expect(tokenRequest.url.pathname).toBe("/token");
    expect(tokenRequest.url.searchParams.get("service")).toBe("fake-registry");
    expect(tokenRequest.url.searchParams.getAll("scope")).toEqual(["repository:team/app:pull"]);
    expect(tokenRequest.authorization).toBe(basic("bob", "pw-bearer"));
    // The registry itself never receives the Basic credentials.
    expect(registry.requests.map((request) => request.authorization)).toEqual([
      undefined,
      "Bearer token-1",
      "Bearer token-1",
    ]);
  });

  it("sends an identity token as an OAuth2 refresh token", async () => {
    const tokenServer = await startServer((_request, response) => {
      sendJson(response, 200, { access_token: "token-2" });
    });
    const registry = await startServer((request, response) => {
      if (request.authorization !== "Bearer token-2") {
        response.writeHead(401, {
          "www-authenticate": `Bearer realm="http://${tokenServer.host}/token",service="fake-registry"`,
        });
        response.end();
        return;
      }
      response.writeHead(200, { "docker-content-digest": `sha256:${"a".repeat(64)}` });
      response.end();
    });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-registry-client-"));
    tempDirs.push(dir);
    await fs.writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({ auths: { [registry.host]: { identitytoken: "refresh-secret" } } }),
    );
    const client = new RegistryClient(registry.host, {
      env: { ...process.env, DOCKER_CONFIG: dir },
    });
    expect((await client.headManifest("team/app", "v1"))?.digest).toBe(`sha256:${"a".repeat(64)}`);
    const tokenRequest = tokenServer.requests[0]!;
    expect(tokenRequest.method).toBe("POST");
    const form = new URLSearchParams(tokenRequest.body.toString("utf8"));
    expect(form.get("grant_type")).toBe("refresh_token");
    expect(form.get("refresh_token")).toBe("refresh-secret");
    expect(form.get("service")).toBe("fake-registry");
    expect(form.get("scope")).toBe("repository:team/app:pull");
    expect(tokenRequest.authorization).toBeUndefined();
  });

  it("reports a second 401 with a login hint and no secret", async () => {
    const secret = "pw-never-printed";
    const server = await startServer((_request, response) => {
      sendJson(
        response,
        401,
        { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] },
        { "www-authenticate": 'Basic realm="fake"' },
      );
    });
    const env = await dockerConfigEnv(server.host, "carol", secret);
    const client = new RegistryClient(server.host, { env });
    const error = await client.listTags("team/app").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationError);
    const { message, hint, exitCode } = error as OperationError;
    expect(exitCode).toBe(1);
    expect(server.requests).toHaveLength(2);
    expect(message).toContain(`registry ${server.host}: GET /v2/team/app/tags/list`);
    expect(message).toContain("HTTP 401");
    expect(message).toContain("UNAUTHORIZED: authentication required");
    expect(hint).toContain("rejected the credentials");
    expect(hint).toContain(path.join(env.DOCKER_CONFIG!, "config.json"));
    expect(hint).toContain(`docker login ${server.host}`);
    const visibleText = `${message}\n${hint}`;
    expect(visibleText).not.toContain(secret);
    expect(visibleText).not.toContain(Buffer.from(`carol:${secret}`).toString("base64"));
  });

  it("reports a Basic challenge without credentials", async () => {
    const server = await startServer((_request, response) => {
      response.writeHead(401, { "www-authenticate": 'Basic realm="fake"' });
      response.end();
    });
    const env = { ...process.env, DOCKER_CONFIG: path.join(os.tmpdir(), "modal-image-no-config") };
    const error = await new RegistryClient(server.host, { env })
      .headManifest("team/app", "v1")
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as OperationError).message).toContain(server.host);
    expect((error as OperationError).message).toContain("no credentials");
    expect((error as OperationError).hint).toBe(`log in with: docker login ${server.host}`);
  });
});

describe("RegistryClient blob copy", () => {
  const blob = Buffer.from("layer bytes for the copy test\n");
  const digest = sha256(blob);
  const descriptor = {
    mediaType: "application/vnd.oci.image.layer.v1.tar",
    digest,
    size: blob.length,
  };

  it("mounts a blob from another repository on 201", async () => {
    const server = await startServer((request, response) => {
      if (request.method === "HEAD") {
        response.writeHead(404);
        response.end();
        return;
      }
      response.writeHead(201, { location: `/v2/team/to/blobs/${digest}` });
      response.end();
    });
    const client = new RegistryClient(server.host);
    const result = await client.copyBlob("team/to", descriptor, {
      client,
      repository: "team/from",
    });
    expect(result).toBe("mounted");
    const mount = server.requests.find((request) => request.method === "POST")!;
    expect(mount.url.pathname).toBe("/v2/team/to/blobs/uploads/");
    expect(mount.url.searchParams.get("mount")).toBe(digest);
    expect(mount.url.searchParams.get("from")).toBe("team/from");
    expect(server.requests.map((request) => request.method)).toEqual(["HEAD", "POST"]);
  });

  it("skips a blob the repository already has", async () => {
    const server = await startServer((_request, response) => {
      response.writeHead(200);
      response.end();
    });
    const client = new RegistryClient(server.host);
    const result = await client.copyBlob("team/to", descriptor, {
      client,
      repository: "team/from",
    });
    expect(result).toBe("present");
    expect(server.requests.map((request) => request.method)).toEqual(["HEAD"]);
  });

  it("streams the blob from the source on 202", async () => {
    const server = await startServer((request, response) => {
      const { method, url } = request;
      if (method === "HEAD") {
        response.writeHead(404);
        response.end();
      } else if (method === "POST") {
        response.writeHead(202, { location: "/v2/team/to/blobs/uploads/u-1?_state=opaque" });
        response.end();
      } else if (method === "GET" && url.pathname === `/v2/team/from/blobs/${digest}`) {
        response.writeHead(200, { "content-length": String(blob.length) });
        response.end(blob);
      } else if (method === "PUT" && url.pathname === "/v2/team/to/blobs/uploads/u-1") {
        const valid = url.searchParams.get("digest") === digest && sha256(request.body) === digest;
        response.writeHead(valid ? 201 : 400);
        response.end();
      } else {
        response.writeHead(500);
        response.end();
      }
    });
    const client = new RegistryClient(server.host);
    const result = await client.copyBlob("team/to", descriptor, {
      client,
      repository: "team/from",
    });
    expect(result).toBe("uploaded");
    const put = server.requests.find((request) => request.method === "PUT")!;
    expect(put.url.searchParams.get("_state")).toBe("opaque");
    expect(put.url.searchParams.get("digest")).toBe(digest);
    expect(put.body.equals(blob)).toBe(true);
    expect(server.requests.map((request) => request.method)).toEqual([
      "HEAD",
      "POST",
      "GET",
      "PUT",
    ]);
  });

  it("uploads a small blob with its digest", async () => {
    const server = await startServer((request, response) => {
      if (request.method === "POST") {
        response.writeHead(202, { location: "/v2/team/to/blobs/uploads/u-2" });
      } else {
        response.writeHead(
          sha256(request.body) === request.url.searchParams.get("digest") ? 201 : 400,
        );
      }
      response.end();
    });
    await new RegistryClient(server.host).uploadBlob("team/to", digest, blob);
    expect(server.requests.map((request) => request.method)).toEqual(["POST", "PUT"]);
    expect(server.requests[1]!.body.equals(blob)).toBe(true);
  });
});
