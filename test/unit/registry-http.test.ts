import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { isTimeout, requestLogged } from "../../src/registry/http.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

const servers: Server[] = [];

/** Starts a server on 127.0.0.1 that records each request and responds through `reply`. */
async function startServer(
  reply: (seen: Seen) => { status: number; headers?: Record<string, string>; body?: string },
): Promise<{ origin: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const entry = {
        method: request.method ?? "",
        url: request.url ?? "",
        headers: request.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(entry);
      const answer = reply(entry);
      response.writeHead(answer.status, answer.headers);
      response.end(answer.body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  const { port } = server.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, seen };
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
    await once(server, "close");
  }
});

describe("requestLogged", () => {
  it("reads status, headers and JSON", async () => {
    const { origin } = await startServer(() => ({
      status: 200,
      headers: { "content-type": "application/json", "docker-content-digest": "sha256:ab" },
      body: '{"tags":["a"]}',
    }));

    const response = await requestLogged("test", new URL("/v2/x/tags/list", origin));

    expect(response.status).toBe(200);
    expect(response.ok).toBe(true);
    expect(response.headers.get("Docker-Content-Digest")).toBe("sha256:ab");
    expect(response.headers.get("location")).toBeNull();
    expect(await response.json()).toEqual({ tags: ["a"] });
  });

  it("sends a buffer body with its length", async () => {
    const { origin, seen } = await startServer(() => ({ status: 201 }));

    const response = await requestLogged("test", new URL("/upload", origin), {
      method: "PUT",
      body: Buffer.from("hello"),
    });
    response.discard();

    expect(response.status).toBe(201);
    expect(seen[0]!.headers["content-length"]).toBe("5");
    expect(seen[0]!.body).toBe("hello");
  });

  it("streams a stream body", async () => {
    const { origin, seen } = await startServer(() => ({ status: 201 }));

    const response = await requestLogged("test", new URL("/upload", origin), {
      method: "PUT",
      body: Readable.from([Buffer.from("ab"), Buffer.from("cd")]),
    });
    response.discard();

    expect(seen[0]!.body).toBe("abcd");
  });

  it("keeps credentials on a same-origin redirect", async () => {
    const { origin, seen } = await startServer(({ url }) =>
      url === "/first" ? { status: 307, headers: { location: "/second" } } : { status: 200 },
    );

    const response = await requestLogged("test", new URL("/first", origin), {
      headers: { authorization: "Bearer token" },
    });
    response.discard();

    expect(response.status).toBe(200);
    expect(seen.map((entry) => entry.url)).toEqual(["/first", "/second"]);
    expect(seen[1]!.headers.authorization).toBe("Bearer token");
  });

  it("drops credentials on a cross-origin redirect", async () => {
    const storage = await startServer(() => ({ status: 200, body: "blob" }));
    const { origin } = await startServer(() => ({
      status: 307,
      headers: { location: `${storage.origin}/blob` },
    }));

    const response = await requestLogged("test", new URL("/v2/x/blobs/sha256:ab", origin), {
      headers: { authorization: "Bearer token" },
    });

    expect((await response.bytes()).toString()).toBe("blob");
    expect(storage.seen[0]!.headers.authorization).toBeUndefined();
  });

  it("returns a redirect when told not to follow", async () => {
    const { origin, seen } = await startServer(() => ({
      status: 307,
      headers: { location: "/elsewhere" },
    }));

    const response = await requestLogged("test", new URL("/v2/", origin), {
      followRedirects: false,
    });
    response.discard();

    expect(response.status).toBe(307);
    expect(seen).toHaveLength(1);
  });

  it("reports a refused connection by its code", async () => {
    const { origin } = await startServer(() => ({ status: 200 }));
    await new Promise<void>((resolve) => {
      const server = servers.pop()!;
      server.close(() => resolve());
    });

    const error = await requestLogged("test", new URL("/v2/", origin)).catch((caught) => caught);

    expect((error as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it("fails on its timeout signal", async () => {
    const server = createServer(() => {
      // Never answers.
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    servers.push(server);
    const { port } = server.address() as AddressInfo;

    const error: unknown = await requestLogged("test", new URL(`http://127.0.0.1:${port}/v2/`), {
      signal: AbortSignal.timeout(50),
    }).catch((caught) => caught);

    expect(isTimeout(error)).toBe(true);
  });
});
