import { checkDockerHost } from "../docker/host.js";
import { NotFoundError } from "../errors.js";
import { parseNameRef, parsePinnedReference, parseImageReference } from "../names.js";
import { openIndex, type CommandOptions } from "./options.js";

export interface RunOptions extends CommandOptions {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** Forwarded to the container's stdin until it ends. Without it the stdin is closed. */
  stdin?: NodeJS.ReadableStream;
}

export interface RunResult {
  reference: string;
  exitCode: number;
}

/**
 * Starts a container from the image a name resolves to, streams its stdout and stderr apart,
 * removes it, and returns its exit code. Pulls the pinned reference first when the daemon
 * does not have it.
 */
export async function run(
  nameRef: string,
  command: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  checkDockerHost();
  const record = await (await openIndex(options)).resolve(parseNameRef(nameRef));
  const docker = await import("../docker/client.js");
  const reference = record.reference;
  if (!(await docker.inspectImage(reference))) {
    const repository = parsePinnedReference(reference)?.repository;
    if (!repository) {
      throw new NotFoundError(`image ${reference} of ${nameRef} is no longer in the local daemon`, {
        hint: `build and publish it again: modal-image build --publish ${nameRef}`,
      });
    }
    const host = parseImageReference(repository)?.domain;
    const { resolveRegistryAuth } = await import("../docker/auth.js");
    const auth = host ? await resolveRegistryAuth(host, options.env) : undefined;
    options.onProgress?.({ type: "phase", image: nameRef, phase: "pull", detail: reference });
    await docker.pullImage({
      reference,
      ...(auth ? { auth } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => options.onProgress?.({ type: "pull", image: nameRef, event }),
    });
  }
  const exitCode = await docker.runContainer({
    image: reference,
    ...(command.length > 0 ? { cmd: [...command] } : {}),
    stdout: options.stdout ?? process.stdout,
    stderr: options.stderr ?? process.stderr,
    ...(options.stdin ? { stdin: options.stdin } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return { reference, exitCode };
}
