// The only module that imports dockerode. Every daemon failure leaves it as a ModalImageError.
import { finished } from "node:stream/promises";
import Docker from "dockerode";
import {
  InterruptedError,
  ModalImageError,
  NotFoundError,
  OperationError,
  interruptedError,
  throwIfAborted,
  UsageError,
} from "../errors.js";
import { parseImageReference } from "../names.js";
import type { RegistryAuth } from "./auth.js";
import { isErrnoException, toDaemonConnectionError } from "./connection.js";
import { checkDockerHost } from "./host.js";
import {
  BuildProgress,
  auxString,
  daemonErrorText,
  isRecord,
  parseJsonLines,
  toStatusEvent,
  type BuildEvent,
  type DaemonMessage,
  type PullEvent,
  type PushEvent,
} from "./progress.js";

export type { RegistryAuth } from "./auth.js";
export { toDaemonConnectionError } from "./connection.js";
export { BuildError } from "./progress.js";
export type { BuildEvent, BuildStep, PullEvent, PushEvent, StatusEvent } from "./progress.js";

// ---------------------------------------------------------------------------------------------
// Connection and error mapping

let sharedDocker: Docker | undefined;

/** Creates a client for the daemon at DOCKER_HOST, or at the default local socket. */
export function connectDocker(): Docker {
  checkDockerHost();
  try {
    return new Docker();
  } catch (error) {
    // docker-modem 5 throws while parsing a malformed DOCKER_HOST.
    throw new UsageError(`invalid DOCKER_HOST ${JSON.stringify(process.env.DOCKER_HOST)}`, {
      hint: "set DOCKER_HOST to unix:///path/to/docker.sock or tcp://HOST:PORT, or unset it",
      cause: error,
    });
  }
}

function defaultDocker(): Docker {
  sharedDocker ??= connectDocker();
  return sharedDocker;
}

/**
 * Returns the daemon's own message from a dockerode HTTP error. dockerode 4 stores a parsed JSON
 * body in `json`, but for streaming endpoints it leaves `json` null and only formats the message
 * as `(HTTP code 400) unexpected - <daemon message> `.
 */
export function daemonMessageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (isConnectionLoss(error)) {
    return `the Docker daemon closed the connection before the end: ${error.message}`;
  }
  const json: unknown = (error as { json?: unknown }).json;
  if (isRecord(json) && typeof json.message === "string") return json.message;
  const formatted = /^\(HTTP code \d+\) .*? - ([\s\S]*?)\s*$/.exec(error.message);
  return formatted?.[1] ?? error.message;
}

/** Checks whether an open connection to the daemon broke, as when the daemon stops mid-stream. */
function isConnectionLoss(error: Error): boolean {
  const code = isErrnoException(error) ? error.code : undefined;
  return code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE" || code === "EPIPE";
}

function statusCodeOf(error: unknown): number | undefined {
  const code: unknown = isRecord(error) ? error.statusCode : undefined;
  return typeof code === "number" ? code : undefined;
}

/** Converts any failure of a daemon call into a ModalImageError, checking for an abort first. */
export function toDockerError(
  error: unknown,
  action: string,
  signal?: AbortSignal,
): ModalImageError {
  if (signal?.aborted) return interruptedError(signal, action);
  if (error instanceof ModalImageError) return error;
  const connectionError = toDaemonConnectionError(error);
  if (connectionError) return connectionError;
  const hint =
    error instanceof Error && isConnectionLoss(error)
      ? "the daemon may have stopped or restarted; check it with `docker info`, then retry"
      : undefined;
  return new OperationError(`${action} failed: ${daemonMessageOf(error)}`, { hint, cause: error });
}

// ---------------------------------------------------------------------------------------------
// Progress streams and cancellation

/** Runs `onAbort` once when the signal aborts, at once if it already has. Returns a remover. */
function whenAborted(signal: AbortSignal | undefined, onAbort: () => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    onAbort();
    return () => {};
  }
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** Destroys `stream` when it has a `destroy` method, which closes its connection. */
export function destroyStream(stream: NodeJS.ReadableStream): void {
  if (isDestroyable(stream)) stream.destroy();
}

function isDestroyable(stream: object): stream is { destroy(): void } {
  return "destroy" in stream && typeof stream.destroy === "function";
}

/**
 * Feeds every JSON message of a progress stream to `handle` until the stream ends. Aborting the
 * signal destroys the response, which closes the connection, and the daemon cancels the
 * operation when its client disconnects.
 */
async function consumeMessages(
  response: NodeJS.ReadableStream,
  signal: AbortSignal | undefined,
  handle: (message: DaemonMessage) => void,
): Promise<void> {
  const unsubscribe = whenAborted(signal, () => destroyStream(response));
  try {
    for await (const message of parseJsonLines(response)) handle(message);
  } finally {
    unsubscribe();
  }
}

// ---------------------------------------------------------------------------------------------
// Build

export interface BuildImageOptions {
  /** A tar stream of the build context. It is piped to the daemon as it is produced. */
  context: NodeJS.ReadableStream;
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  tags?: string[];
  labels?: Record<string, string>;
  buildArgs?: Record<string, string>;
  /** Pull a newer version of each base image even if one exists locally. */
  pull?: boolean;
  noCache?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: BuildEvent) => void;
  docker?: Docker;
}

/**
 * Builds an image with the classic builder and returns its ID. Throws a BuildError naming the
 * failing step when the daemon reports an error, and an InterruptedError when `signal` aborts.
 */
export async function buildImage(options: BuildImageOptions): Promise<{ imageId: string }> {
  const { context, signal } = options;
  const docker = options.docker ?? defaultDocker();
  const progress = new BuildProgress(options.onEvent);
  try {
    throwIfAborted(signal, "build");
    const response = await docker.buildImage(context, buildQuery(options));
    await consumeMessages(response, signal, (message) => progress.handle(message));
    return progress.finish();
  } catch (error) {
    // Nothing reads the context any more, so a producer waiting on it must not hang.
    destroyStream(context);
    if (signal?.aborted) await removeBuildContainer(docker, progress.runningContainer);
    throw toDockerError(error, "build", signal);
  }
}

/**
 * Removes the container of an interrupted RUN step, or waits until the daemon has. The daemon
 * removes it by itself once the build's connection closes, but Engine 20.10 was still doing so
 * when this process would have exited. Throws an InterruptedError naming the container when
 * the removal fails.
 */
async function removeBuildContainer(docker: Docker, id: string | undefined): Promise<void> {
  // NOTE: a signal that arrives before the builder's `Running in` line leaves any container of
  // that step to the daemon's own cleanup.
  if (id === undefined) return;
  const container = docker.getContainer(id);
  let failure: unknown;
  try {
    await container.remove({ force: true });
    return;
  } catch (error) {
    failure = error;
  }
  // 409 means the daemon is removing the container already, and the wait ends once it is gone.
  if (statusCodeOf(failure) === 409) {
    failure = await container.wait({ condition: "removed" }).then(
      () => undefined,
      (error: unknown) => error,
    );
  }
  if (failure === undefined || statusCodeOf(failure) === 404) return;
  throw new InterruptedError(
    `build interrupted; its container ${id} may still exist: ${daemonMessageOf(failure)}`,
    { hint: `remove it with: docker rm -f ${id}`, cause: failure },
  );
}

function buildQuery(options: BuildImageOptions): Docker.ImageBuildOptions {
  const query: Docker.ImageBuildOptions = {
    dockerfile: options.dockerfile,
    // The classic builder reports `Step N/M` lines and plain output. BuildKit ("2") reports
    // protobuf trace messages, which BuildProgress does not decode.
    version: "1",
    rm: true,
    // Without forcerm, Engine 20.10 keeps the container of a failed RUN step.
    forcerm: true,
  };
  if (options.signal) query.abortSignal = options.signal;
  if (options.tags && options.tags.length > 0) {
    // docker-modem encodes an array as t=a&t=b, which the Engine API reads as several tags.
    // @types/dockerode 4.0.2 types `t` as a single string.
    query.t = options.tags as unknown as string;
  }
  if (options.labels) query.labels = options.labels;
  if (options.buildArgs) query.buildargs = options.buildArgs;
  if (options.pull) query.pull = true;
  if (options.noCache) query.nocache = true;
  return query;
}

// ---------------------------------------------------------------------------------------------
// Push and pull

export interface PushImageOptions {
  /** Repository with its registry host, such as `127.0.0.1:5000/team/app`. */
  repository: string;
  tag: string;
  auth?: RegistryAuth;
  signal?: AbortSignal;
  onEvent?: (event: PushEvent) => void;
  docker?: Docker;
}

/** Pushes `repository:tag` through the daemon and returns the registry's manifest digest. */
export async function pushImage(options: PushImageOptions): Promise<{ digest: string }> {
  const { repository, tag, auth, signal } = options;
  const docker = options.docker ?? defaultDocker();
  const registry = registryHostOf(repository);
  const target = `${repository}:${tag}`;
  const subject = `push of ${target} to registry ${registry}`;
  let digest: string | undefined;

  try {
    throwIfAborted(signal, "push");
    const response = await docker.getImage(repository).push({
      tag,
      // Engine 20.10 rejects a push without an X-Registry-Auth header ("Bad parameters and
      // missing X-Registry-Auth: EOF"), so an anonymous push sends an empty auth object.
      authconfig: auth ?? {},
      ...(signal ? { abortSignal: signal } : {}),
    });
    await consumeMessages(response, signal, (message) => {
      const errorText = daemonErrorText(message);
      if (errorText !== undefined) throw registryError(subject, registry, errorText, auth);
      // The last message of a push is {"aux":{"Tag":..,"Digest":"sha256:..","Size":..}}.
      digest = auxString(message, "Digest") ?? digest;
      const status = toStatusEvent(message);
      if (status) options.onEvent?.(status);
    });
  } catch (error) {
    throw toRegistryOperationError(error, subject, registry, auth, signal);
  }

  if (!digest) {
    throw new OperationError(`push of ${target} ended without a manifest digest from ${registry}`, {
      hint: "retry the push; if it repeats, check the registry's logs",
    });
  }
  return { digest };
}

export interface PullImageOptions {
  /** `repository:tag` or a pinned `repository@sha256:...`; a missing tag means `latest`. */
  reference: string;
  auth?: RegistryAuth;
  signal?: AbortSignal;
  onEvent?: (event: PullEvent) => void;
  docker?: Docker;
}

/** Pulls an image through the daemon. */
export async function pullImage(options: PullImageOptions): Promise<void> {
  const { reference, auth, signal } = options;
  const docker = options.docker ?? defaultDocker();
  const parsed = parseImageReference(reference);
  if (!parsed) {
    throw new UsageError(`invalid image reference ${JSON.stringify(reference)}`, {
      hint: "use REPOSITORY[:TAG] or REPOSITORY@sha256:DIGEST",
    });
  }
  const registry = parsed.domain ?? "docker.io";
  const repository = parsed.domain ? `${parsed.domain}/${parsed.path}` : parsed.path;
  const subject = `pull of ${reference} from registry ${registry}`;

  try {
    throwIfAborted(signal, "pull");
    // The Engine API pulls every tag of the repository when `tag` is empty, so a reference
    // without a tag or digest gets `latest`, as `docker pull` does.
    const response = await docker.createImage(auth ?? {}, {
      fromImage: repository,
      tag: parsed.digest ?? parsed.tag ?? "latest",
      ...(signal ? { abortSignal: signal } : {}),
    });
    await consumeMessages(response, signal, (message) => {
      const errorText = daemonErrorText(message);
      if (errorText !== undefined) throw registryError(subject, registry, errorText, auth);
      const status = toStatusEvent(message);
      if (status) options.onEvent?.(status);
    });
  } catch (error) {
    throw toRegistryOperationError(error, subject, registry, auth, signal);
  }
}

/** Returns the registry host of a repository name, `docker.io` when it names none. */
function registryHostOf(repository: string): string {
  return parseImageReference(repository)?.domain ?? "docker.io";
}

function toRegistryOperationError(
  error: unknown,
  subject: string,
  registry: string,
  auth: RegistryAuth | undefined,
  signal: AbortSignal | undefined,
): ModalImageError {
  if (signal?.aborted) return interruptedError(signal, subject);
  if (error instanceof ModalImageError) return error;
  const connectionError = toDaemonConnectionError(error);
  if (connectionError) return connectionError;
  // Engine 20.10 returns HTTP 404 for a pull of a manifest that the registry does not have.
  if (statusCodeOf(error) === 404) {
    return new NotFoundError(`${subject} failed: ${redact(daemonMessageOf(error), auth)}`, {
      hint: "check the repository and digest or tag; the registry has no such manifest",
    });
  }
  return registryError(subject, registry, daemonMessageOf(error), auth);
}

/**
 * Builds the error for a registry failure that the daemon reported. The message names the
 * registry and quotes the daemon, with every secret of `auth` masked.
 */
function registryError(
  subject: string,
  registry: string,
  daemonText: string,
  auth: RegistryAuth | undefined,
): OperationError {
  const text = redact(daemonText, auth);
  const unauthorized =
    /unauthorized|authentication required|no basic auth credentials|denied|forbidden|\b40[13]\b/i;
  const unreachable = /connection refused|no such host|timeout|network is unreachable/i;
  let hint =
    `check that ${registry} is running and that credentials are set, ` +
    `with \`docker login ${registry}\` or a config.json in DOCKER_CONFIG`;
  if (/does not exist locally/.test(text)) {
    hint = "build or tag the image before pushing it";
  } else if (unauthorized.test(text)) {
    hint = auth
      ? `the registry rejected the credentials; run \`docker login ${registry}\` again, ` +
        "or fix the config.json in DOCKER_CONFIG"
      : `no credentials were found for ${registry}; run \`docker login ${registry}\`, ` +
        "or set DOCKER_CONFIG to a directory whose config.json contains them";
  } else if (unreachable.test(text)) {
    hint = `check that the registry at ${registry} is running and reachable from the Docker daemon`;
  }
  return new OperationError(`${subject} failed: ${text}`, { hint });
}

/** Masks each secret of `auth` that appears in `text`, including the base64 `user:password`. */
function redact(text: string, auth: RegistryAuth | undefined): string {
  if (!auth) return text;
  const secrets = [auth.password, auth.identitytoken, auth.registrytoken];
  if (auth.username !== undefined && auth.password) {
    secrets.push(Buffer.from(`${auth.username}:${auth.password}`).toString("base64"));
  }
  let result = text;
  for (const secret of secrets) {
    if (secret) result = result.split(secret).join("[redacted]");
  }
  return result;
}

/** The manifest a registry serves for a reference, as the daemon reports it. */
export interface DistributionInfo {
  digest: string;
  mediaType: string;
  size: number;
}

/**
 * Asks the registry, through the daemon, for the manifest of `reference`. Returns undefined when
 * the registry has no such manifest or repository.
 */
export async function inspectDistribution(
  reference: string,
  auth?: RegistryAuth,
  docker: Docker = defaultDocker(),
): Promise<DistributionInfo | undefined> {
  const registry = registryHostOf(reference);
  const subject = `manifest lookup of ${reference} at registry ${registry}`;
  let info: unknown;
  try {
    info = await docker.getImage(reference).distribution({ authconfig: auth ?? {} });
  } catch (error) {
    // Engine 20.10 returns 404 with "manifest unknown" for a missing digest or repository.
    if (statusCodeOf(error) === 404) return undefined;
    throw toRegistryOperationError(error, subject, registry, auth, undefined);
  }
  const descriptor = isRecord(info) ? info.Descriptor : undefined;
  if (!isRecord(descriptor) || typeof descriptor.digest !== "string") {
    throw new OperationError(`${subject} returned no manifest descriptor`);
  }
  return {
    digest: descriptor.digest,
    mediaType: typeof descriptor.mediaType === "string" ? descriptor.mediaType : "",
    size: typeof descriptor.size === "number" ? descriptor.size : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Local images

/** The parts of `docker image inspect` that callers use. */
export interface ImageInfo {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  labels: Record<string, string>;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
  user: string;
  created: string;
  size: number;
}

/** Inspects a local image by ID or reference. Returns undefined when the image does not exist. */
export async function inspectImage(
  reference: string,
  docker: Docker = defaultDocker(),
): Promise<ImageInfo | undefined> {
  let info: Docker.ImageInspectInfo;
  try {
    info = await docker.getImage(reference).inspect();
  } catch (error) {
    if (statusCodeOf(error) === 404) return undefined;
    throw toDockerError(error, `inspect of image ${reference}`);
  }
  // The daemon sends null, not [], for an unset Env, Cmd or Entrypoint and for no labels.
  const config: Partial<Docker.ImageInspectInfo["Config"]> = info.Config ?? {};
  return {
    id: info.Id,
    repoTags: info.RepoTags ?? [],
    repoDigests: info.RepoDigests ?? [],
    labels: config.Labels ?? {},
    env: config.Env ?? [],
    entrypoint: toArgv(config.Entrypoint),
    cmd: toArgv(config.Cmd),
    workingDir: config.WorkingDir ?? "",
    user: config.User ?? "",
    created: info.Created,
    size: info.Size,
  };
}

function toArgv(value: string | string[] | null | undefined): string[] {
  if (value === null || value === undefined) return [];
  return typeof value === "string" ? [value] : value;
}

/** Lists the local images whose label `key` has `value`, with their IDs and creation times. */
export async function listImagesByLabel(
  key: string,
  value: string,
  docker: Docker = defaultDocker(),
): Promise<Array<{ Id: string; Created: number }>> {
  try {
    return await docker.listImages({ filters: { label: [`${key}=${value}`] } });
  } catch (error) {
    throw toDockerError(error, `list of images with label ${key}=${value}`);
  }
}

/** Adds the tag `repository:tag` to a local image. */
export async function tagImage(
  imageId: string,
  repository: string,
  tag: string,
  docker: Docker = defaultDocker(),
): Promise<void> {
  try {
    await docker.getImage(imageId).tag({ repo: repository, tag });
  } catch (error) {
    if (statusCodeOf(error) === 404) {
      throw new NotFoundError(`image ${imageId} not found in the local daemon`, {
        hint: "build the image again, or list images with `docker images --no-trunc`",
      });
    }
    throw toDockerError(error, `tag of image ${imageId} as ${repository}:${tag}`);
  }
}

/** Removes a local image or tag. Returns false when the daemon has no such image. */
export async function removeImage(
  reference: string,
  options: { force?: boolean; docker?: Docker } = {},
): Promise<boolean> {
  const docker = options.docker ?? defaultDocker();
  try {
    await docker.getImage(reference).remove({ force: options.force ?? false });
    return true;
  } catch (error) {
    if (statusCodeOf(error) === 404) return false;
    throw toDockerError(error, `removal of image ${reference}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Containers

export interface RunContainerOptions {
  image: string;
  /** Replaces the image's CMD. */
  cmd?: string[];
  /** `NAME=value` entries added to the image's environment. */
  env?: string[];
  labels?: Record<string, string>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /**
   * Forwarded to the container's stdin until it ends, as with `docker run -i`. Without it the
   * container's stdin is closed.
   */
  stdin?: NodeJS.ReadableStream;
  signal?: AbortSignal;
  docker?: Docker;
}

/**
 * Runs a container to completion with stdout and stderr kept apart, removes it, and returns its
 * exit code. All output is written before this returns. Aborting `signal` kills the container,
 * removes it and throws an InterruptedError.
 */
export async function runContainer(options: RunContainerOptions): Promise<number> {
  const { image, signal } = options;
  const docker = options.docker ?? defaultDocker();
  throwIfAborted(signal, `run of ${image}`);

  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      Image: image,
      ...(options.cmd ? { Cmd: options.cmd } : {}),
      ...(options.env ? { Env: options.env } : {}),
      ...(options.labels ? { Labels: options.labels } : {}),
      Tty: false,
      // StdinOnce closes the container's stdin when the forwarded input ends.
      OpenStdin: options.stdin !== undefined,
      StdinOnce: options.stdin !== undefined,
      AttachStdin: options.stdin !== undefined,
      AttachStdout: true,
      AttachStderr: true,
    });
  } catch (error) {
    if (statusCodeOf(error) === 404) {
      throw new NotFoundError(`image ${image} not found in the local daemon`, {
        hint: "build or pull the image first",
      });
    }
    throw toDockerError(error, `creation of a container from ${image}`, signal);
  }

  let exitCode: number;
  try {
    exitCode = await attachStartAndWait(docker, container, options);
  } catch (error) {
    // NOTE: a removal failure here is dropped so that the run's own error is the one reported.
    await container.remove({ force: true }).catch(() => undefined);
    throw toDockerError(error, `run of ${image}`, signal);
  }
  try {
    await container.remove({ force: true });
  } catch (error) {
    throw toDockerError(error, `removal of container ${container.id}`);
  }
  return exitCode;
}

async function attachStartAndWait(
  docker: Docker,
  container: Docker.Container,
  options: RunContainerOptions,
): Promise<number> {
  const { signal, stdin } = options;
  // Attaching before start is what guarantees that no early output is lost.
  const stream = await container.attach({ stream: true, stdout: true, stderr: true });
  // Input goes over a second, hijacked connection, so that when the container stops reading
  // and the daemon closes it, the output connection is unaffected.
  const input = stdin
    ? await container.attach({
        stream: true,
        stdin: true,
        hijack: true,
      })
    : undefined;
  const ended = finished(stream);
  // Keeps a rejection unhandled-safe until `ended` is awaited below.
  ended.catch(() => undefined);
  docker.modem.demuxStream(stream, options.stdout, options.stderr);

  const kill = () => void container.kill().catch(() => undefined);
  const unsubscribe = whenAborted(signal, kill);
  try {
    throwIfAborted(signal, `run of ${options.image}`);
    await container.start();
    // A kill sent while the start request was in flight found no running process.
    if (signal?.aborted) kill();
    if (stdin && input) forwardInput(stdin, input);
    const result: unknown = await container.wait();
    // The daemon closes the attach stream once the container's output is drained.
    await ended;
    throwIfAborted(signal, `run of ${options.image}`);
    return exitCodeOf(result, options.image);
  } finally {
    unsubscribe();
    if (input) {
      stdin?.unpipe(input);
      destroyStream(input);
    }
    destroyStream(stream);
  }
}

/**
 * Pipes `input` into a hijacked attach connection and closes the connection's writing side
 * when `input` ends, which ends the container's stdin.
 */
function forwardInput(input: NodeJS.ReadableStream, connection: NodeJS.ReadWriteStream): void {
  input.pipe(connection, { end: false });
  input.once("end", () => connection.end());
  // A write fails once the container has exited or closed its stdin and the daemon has closed
  // this connection. The input not sent is dropped, and the container's exit code decides.
  connection.on("error", () => input.unpipe(connection));
}

/** Reads StatusCode from the body of `POST /containers/{id}/wait`. */
function exitCodeOf(waitResult: unknown, image: string): number {
  const statusCode = isRecord(waitResult) ? waitResult.StatusCode : undefined;
  if (typeof statusCode !== "number") {
    const body = JSON.stringify(waitResult);
    throw new OperationError(
      `the daemon returned no exit code for a container of ${image}: ${body}`,
    );
  }
  return statusCode;
}
