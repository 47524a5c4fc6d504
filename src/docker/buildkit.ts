/**
 * Builds with BuildKit through the Engine API, for definitions whose commands use secrets: the
 * classic builder has no way to mount a secret. The tar context goes in the request body as
 * for the classic builder (the daemon's builder-next serves the body as the context), and the
 * secrets come from a session that this process serves for the length of the build.
 */
import type Docker from "dockerode";
import { ModalImageError, OperationError, throwIfAborted } from "../errors.js";
import { connectDocker, destroyStream, toDockerError, type BuildImageOptions } from "./client.js";
import { BuildKitProgress } from "./buildkit-progress.js";
import { isRecord, parseJsonLines } from "./progress.js";
import { openBuildSession, sessionHint, type SecretValues } from "./session.js";

/** The first Engine API version (Docker 18.09) with `POST /session` outside experimental mode. */
export const minimumSessionApiVersion = "1.39";

export interface BuildKitBuildOptions extends BuildImageOptions {
  /** Values by secret ID. */
  secrets: SecretValues;
  /** Masks secret values in text that reaches progress events and errors. */
  redact?: (text: string) => string;
  /** Names the session in the daemon's logs. */
  sessionName?: string;
}

function compareVersions(a: string, b: string): number {
  const left = a.split(".").map(Number);
  const right = b.split(".").map(Number);
  for (let index = 0; index < Math.max(left.length, right.length); index++) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/**
 * Refuses, before any build starts, a daemon that cannot serve a build its secrets safely: an
 * Engine API older than 1.39 or a daemon that is not on Linux.
 */
async function checkDaemon(docker: Docker): Promise<void> {
  let version: Docker.DockerVersion;
  try {
    version = await docker.version();
  } catch (error) {
    throw toDockerError(error, "version check of the Docker daemon");
  }
  const apiVersion = version.ApiVersion;
  if (typeof apiVersion !== "string" || compareVersions(apiVersion, minimumSessionApiVersion) < 0) {
    throw new OperationError(
      `cannot build with secrets: the Docker daemon speaks Engine API ${String(apiVersion)}, and BuildKit sessions need ${minimumSessionApiVersion} or later`,
      { hint: sessionHint },
    );
  }
  if (version.Os && version.Os !== "linux") {
    throw new OperationError(
      `cannot build with secrets: the Docker daemon runs on ${version.Os}, where it has no BuildKit`,
      { hint: sessionHint },
    );
  }
}

function buildKitQuery(options: BuildKitBuildOptions, sessionId: string): Record<string, unknown> {
  const query: Record<string, unknown> = {
    dockerfile: options.dockerfile,
    version: "2",
    session: sessionId,
    rm: true,
    forcerm: true,
  };
  // docker-modem encodes an array as t=a&t=b and an object as JSON, as the Engine API reads them.
  if (options.tags && options.tags.length > 0) query.t = options.tags;
  if (options.labels) query.labels = options.labels;
  if (options.buildArgs) query.buildargs = options.buildArgs;
  if (options.pull) query.pull = true;
  if (options.noCache) query.nocache = true;
  return query;
}

/** Sends `POST /build` and returns the progress stream, or the daemon's refusal. */
function startBuild(
  docker: Docker,
  options: BuildKitBuildOptions,
  sessionId: string,
): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      {
        path: "/build?",
        method: "POST",
        file: options.context,
        options: buildKitQuery(options, sessionId),
        isStream: true,
        ...(options.signal ? { abortSignal: options.signal } : {}),
        statusCodes: { 200: true, 400: "bad parameter", 500: "server error" },
      },
      (error: unknown, stream: unknown) => {
        if (error) reject(error instanceof Error ? error : new Error(JSON.stringify(error)));
        else resolve(stream as NodeJS.ReadableStream);
      },
    );
  });
}

/** Maps the daemon's rejection of `version=2` to an error that names what is needed. */
function refusalOf(error: unknown): OperationError | undefined {
  const statusCode = isRecord(error) ? error.statusCode : undefined;
  if (statusCode !== 400 && statusCode !== 500) return undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (!/buildkit|builder version|session/i.test(message)) return undefined;
  return new OperationError(
    `cannot build with secrets: the Docker daemon rejected a BuildKit build (${message})`,
    {
      hint: sessionHint,
      cause: error,
    },
  );
}

/**
 * Builds an image with BuildKit, serving `secrets` to its `RUN --mount=type=secret` steps, and
 * returns its ID. Throws a BuildError naming the failing step, an InterruptedError when `signal`
 * aborts, and an OperationError that names what is needed when the daemon has no BuildKit.
 */
export async function buildImageWithSecrets(
  options: BuildKitBuildOptions,
): Promise<{ imageId: string }> {
  const { context, signal } = options;
  const docker = options.docker ?? connectDocker();
  const redact = options.redact ?? ((text: string) => text);
  const progress = new BuildKitProgress(options.onEvent, redact);
  let session: Awaited<ReturnType<typeof openBuildSession>> | undefined;
  try {
    throwIfAborted(signal, "build");
    await checkDaemon(docker);
    session = await openBuildSession(docker, options.secrets, {
      name: options.sessionName ?? "modal-image",
      sharedKey: options.sessionName ?? "modal-image",
      ...(signal ? { signal } : {}),
    });
    const response = await startBuild(docker, options, session.id);
    const onAbort = () => destroyStream(response);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const message of parseJsonLines(response)) progress.handle(message);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    return progress.finish();
  } catch (error) {
    // Nothing reads the context any more, so a producer waiting on it must not hang.
    destroyStream(context);
    throwIfAborted(signal, "build");
    if (error instanceof ModalImageError) throw error;
    const refusal = refusalOf(error);
    if (refusal) throw refusal;
    const mapped = toDockerError(error, "build", signal);
    mapped.message = redact(mapped.message);
    throw mapped;
  } finally {
    session?.close();
  }
}
