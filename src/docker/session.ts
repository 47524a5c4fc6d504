/**
 * A BuildKit session over the Engine API, which is how a build gets secrets from its client:
 * `POST /session` is upgraded to HTTP/2 cleartext, and on that connection this process is the
 * gRPC server and the daemon the client. The session serves `moby.buildkit.secrets.v1.Secrets`
 * and `grpc.health.v1.Health`, whose checks the daemon sends every few seconds and without
 * which it drops the session.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import type Docker from "dockerode";
import { OperationError } from "../errors.js";
import { encodeBytesField, encodeVarintField, fieldString, readFields } from "./protobuf.js";

/** Secret values by ID, as the build's `--mount=type=secret,id=ID` requests them. */
export type SecretValues = ReadonlyMap<string, Uint8Array>;

const getSecretMethod = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
const healthCheckMethod = "/grpc.health.v1.Health/Check";

/** Decodes the daemon's request for one secret, `GetSecretRequest { string ID = 1; ... }`. */
function decodeGetSecretRequest(bytes: Buffer): { id: string } {
  let id = "";
  for (const field of readFields(bytes)) if (field.field === 1) id = fieldString(field);
  return { id };
}

function identity(bytes: Buffer): Buffer {
  return bytes;
}

function unaryMethod<Request>(
  path: string,
  deserialize: (bytes: Buffer) => Request,
): grpc.MethodDefinition<Request, Buffer> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: deserialize,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

const secretsService: grpc.ServiceDefinition = {
  GetSecret: unaryMethod(getSecretMethod, decodeGetSecretRequest),
};
const healthService: grpc.ServiceDefinition = {
  Check: unaryMethod(healthCheckMethod, identity),
};

/** An open session; `id` goes into the build's `session` parameter. */
export interface BuildSession {
  id: string;
  /** Closes the connection. Safe to call more than once. */
  close(): void;
  /** IDs the daemon asked for and this session did not have. */
  readonly missing: readonly string[];
}

/** The daemon's response when it did not upgrade `POST /session`. */
export class SessionRefusedError extends OperationError {}

/**
 * Opens a session that serves `secrets` to builds that name its ID. The caller must close it
 * once the build ends. Values leave this process only in responses to GetSecret.
 */
export async function openBuildSession(
  docker: Docker,
  secrets: SecretValues,
  options: { name: string; sharedKey: string; signal?: AbortSignal },
): Promise<BuildSession> {
  const id = randomUUID();
  const missing: string[] = [];
  const socket = await upgrade(
    docker,
    {
      "X-Docker-Expose-Session-Uuid": id,
      "X-Docker-Expose-Session-Name": options.name,
      "X-Docker-Expose-Session-Sharedkey": options.sharedKey,
      "X-Docker-Expose-Session-Grpc-Method": [getSecretMethod, healthCheckMethod],
    },
    options.signal,
  );

  const server = new grpc.Server();
  server.addService(secretsService, {
    GetSecret(
      call: grpc.ServerUnaryCall<{ id: string }, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) {
      const value = secrets.get(call.request.id);
      if (value === undefined) {
        missing.push(call.request.id);
        // BuildKit maps NotFound to "secret ID: not found".
        callback({ code: grpc.status.NOT_FOUND, details: `secret ${call.request.id} not found` });
        return;
      }
      callback(null, encodeBytesField(1, value));
    },
  });
  server.addService(healthService, {
    Check(_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      // HealthCheckResponse { ServingStatus status = 1; }, SERVING = 1.
      callback(null, encodeVarintField(1, 1));
    },
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  injector.injectConnection(socket);

  let closed = false;
  return {
    id,
    missing,
    close() {
      if (closed) return;
      closed = true;
      injector.destroy();
      server.forceShutdown();
      socket.destroy();
    },
  };
}

interface ModemSettings {
  socketPath?: string | (() => string | Promise<string>);
  host?: string;
  port?: number | string;
  protocol?: string;
  pathPrefix?: string;
  ca?: string | Buffer | Array<string | Buffer>;
  cert?: string | Buffer;
  key?: string | Buffer;
  headers?: Record<string, string>;
}

/**
 * Sends `POST /session` with `Upgrade: h2c` and returns the upgraded connection. The request
 * has no body, so no byte of HTTP/1.1 framing follows the headers onto the HTTP/2 connection.
 */
async function upgrade(
  docker: Docker,
  sessionHeaders: Record<string, string | string[]>,
  signal: AbortSignal | undefined,
): Promise<Duplex> {
  const modem = docker.modem as unknown as ModemSettings;
  const headers = {
    ...modem.headers,
    ...sessionHeaders,
    Connection: "Upgrade",
    Upgrade: "h2c",
    "Content-Length": "0",
  };
  let request: http.ClientRequest;
  const prefix = (modem.pathPrefix ?? "/").replace(/\/$/, "");
  const requestOptions: http.RequestOptions = {
    method: "POST",
    path: `${prefix}/session`,
    headers,
  };
  if (signal) requestOptions.signal = signal;
  if (modem.socketPath) {
    const socketPath =
      typeof modem.socketPath === "function" ? await modem.socketPath() : modem.socketPath;
    request = http.request({ ...requestOptions, socketPath });
  } else if (modem.protocol === "http" || modem.protocol === "https") {
    const target = { ...requestOptions, host: modem.host, port: modem.port };
    request =
      modem.protocol === "https"
        ? https.request({
            ...target,
            ...(modem.ca ? { ca: modem.ca } : {}),
            ...(modem.cert ? { cert: modem.cert } : {}),
            ...(modem.key ? { key: modem.key } : {}),
          })
        : http.request(target);
  } else {
    throw new SessionRefusedError(
      `building with secrets needs a BuildKit session, which modal-image opens only over a unix socket, tcp:// or https; DOCKER_HOST uses ${modem.protocol ?? "another protocol"}`,
      { hint: "point DOCKER_HOST at the daemon's unix socket or a tcp:// address" },
    );
  }

  return new Promise((resolve, reject) => {
    request.on("upgrade", (_response, socket, head) => {
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    request.on("response", (response) => {
      // Any status but 101 means the daemon cannot give this build a session.
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8").trim();
        let message = body;
        try {
          const parsed = JSON.parse(body) as { message?: unknown };
          if (typeof parsed.message === "string") message = parsed.message;
        } catch {
          // A plain-text body is quoted as it is.
        }
        reject(
          new SessionRefusedError(
            `the Docker daemon rejected a BuildKit session (HTTP ${response.statusCode}${message ? `: ${message}` : ""})`,
            { hint: sessionHint },
          ),
        );
      });
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end();
  });
}

export const sessionHint =
  "secrets need a Docker Engine with BuildKit on Linux, API 1.39 or later (Docker 18.09+, tested with 20.10); remove `secrets` from runCommands to build with the classic builder";
