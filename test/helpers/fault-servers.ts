/**
 * Servers that a test starts on loopback or in a temporary directory to make the daemon or a
 * registry fail in a chosen way. Each one forwards to, or replaces, a part of the stack that
 * `scripts/stack.sh up` starts, and never changes the shared daemon or registries themselves.
 */
import fs from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { openRegistry } from "./stack.js";

/** A server started by a test; `close` stops it and cuts its open connections. */
export interface FaultServer {
  /** `127.0.0.1:PORT` for a registry, or `unix:///...` for a daemon. */
  address: string;
  /** `METHOD PATH` of each request received, in order. */
  requests: string[];
  close(): Promise<void>;
}

function listen(server: net.Server, target: number | string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    if (typeof target === "string") server.listen(target, () => resolve());
    else server.listen(target, "127.0.0.1", () => resolve());
  });
}

function portOf(server: net.Server): number {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("server has no port");
  return address.port;
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

function trackSockets(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return sockets;
}

/** Returns `127.0.0.1:PORT` for a port that was free a moment ago and has no listener now. */
export async function closedPort(): Promise<string> {
  const server = net.createServer();
  await listen(server, 0);
  const port = portOf(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** Starts a fake registry that responds to every request with `status` and a distribution error. */
export async function startFailingRegistry(status: number): Promise<FaultServer> {
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    request.resume();
    const body = { errors: [{ code: "UNKNOWN", message: `injected HTTP ${status}` }] };
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  });
  const sockets = trackSockets(server);
  await listen(server, 0);
  return {
    address: `127.0.0.1:${portOf(server)}`,
    requests,
    close: () => closeServer(server, sockets),
  };
}

/** What a registry proxy does with a request that `match` selects. */
export type ProxyFault =
  /** Holds the request open with no response until the proxy closes. */
  | { kind: "stall" }
  /** Responds with this status and a distribution error with this code. */
  | { kind: "answer"; status: number; code: string; message: string };

export interface RegistryProxy extends FaultServer {
  /** Resolves when the first request that `match` selects arrives. */
  faulted: Promise<void>;
}

/**
 * Starts an HTTP proxy on 127.0.0.1 in front of the open registry. It forwards every request
 * unchanged, Host header included, so the registry's Location URLs point back at the proxy.
 * Requests that `match` selects get `fault` instead.
 */
export async function startRegistryProxy(
  match: (method: string, url: string) => boolean,
  fault: ProxyFault,
): Promise<RegistryProxy> {
  const [upstreamHost, upstreamPort] = openRegistry.split(":");
  const requests: string[] = [];
  let markFaulted: () => void = () => {};
  const faulted = new Promise<void>((resolve) => (markFaulted = resolve));

  const server = http.createServer((request, response) => {
    const method = request.method ?? "GET";
    const url = request.url ?? "/";
    requests.push(`${method} ${url}`);
    if (match(method, url)) {
      markFaulted();
      if (fault.kind === "stall") return;
      request.resume();
      const body = { errors: [{ code: fault.code, message: fault.message }] };
      response.writeHead(fault.status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
      return;
    }
    const upstream = http.request(
      {
        host: upstreamHost,
        port: Number(upstreamPort),
        method,
        path: url,
        headers: request.headers,
      },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on("error", () => response.destroy());
    request.pipe(upstream);
  });
  const sockets = trackSockets(server);
  await listen(server, 0);
  return {
    address: `127.0.0.1:${portOf(server)}`,
    requests,
    faulted,
    close: () => closeServer(server, sockets),
  };
}

const requestLinePattern = /(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP\/1\.1\r\n/g;

export interface DyingDaemon extends FaultServer {
  /** `METHOD PATH` of each build request whose connection the proxy cut. */
  cutRequests: string[];
}

/** Returns the socket path of the real daemon, from DOCKER_HOST when it names a unix socket. */
function realDaemonSocket(): string {
  const host = process.env.DOCKER_HOST;
  return host?.startsWith("unix://") ? host.slice("unix://".length) : "/var/run/docker.sock";
}

/**
 * Starts a proxy on a unix socket in a temporary directory that forwards to the real daemon
 * byte for byte. Once a connection has carried a `POST .../build` request and the daemon has
 * sent the first progress message for it, the proxy destroys both sides of that connection,
 * as a daemon that dies mid-build would.
 */
export async function startDyingDaemon(): Promise<DyingDaemon> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-daemon-"));
  const socketPath = path.join(dir, "docker.sock");
  const requests: string[] = [];
  const cutRequests: string[] = [];

  const server = net.createServer((client) => {
    const upstream = net.connect(realDaemonSocket());
    let building: string | undefined;
    client.on("data", (chunk: Buffer) => {
      // NOTE: the bytes of a build context could contain a request line by chance, which at
      // worst cuts a connection that was not building.
      const text = chunk.toString("latin1");
      for (const [, method, target] of text.matchAll(requestLinePattern)) {
        requests.push(`${method} ${target}`);
        if (method === "POST" && /\/build\?/.test(target ?? "")) building = `${method} ${target}`;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      client.write(chunk);
      if (building !== undefined && chunk.includes('"stream"')) {
        client.destroy();
        upstream.destroy();
        cutRequests.push(building);
      }
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  const sockets = trackSockets(server);
  await listen(server, socketPath);
  return {
    address: `unix://${socketPath}`,
    requests,
    cutRequests,
    async close() {
      await closeServer(server, sockets);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
