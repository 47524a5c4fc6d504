// How the daemon is reached, and what a failure to reach it means. Kept apart from client.ts so
// that the light client in engine.ts can report the same errors without loading dockerode.
import { OperationError } from "../errors.js";

const startDaemonHint =
  "start the Docker daemon, or set DOCKER_HOST to a running one (in a clone of modal-image: bash scripts/stack.sh up)";

// Node error codes for a daemon address that nothing listens on or that cannot be reached.
const connectionErrorCodes = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "EACCES",
  "EPERM",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
]);

/**
 * Maps a failure to reach the daemon (no socket, connection refused, no permission) to an
 * OperationError that names the daemon address. Returns undefined for any other error.
 */
export function toDaemonConnectionError(error: unknown): OperationError | undefined {
  if (!isErrnoException(error) || !connectionErrorCodes.has(error.code ?? "")) return undefined;
  if (error.syscall !== "connect" && error.syscall !== "getaddrinfo") return undefined;

  const hint =
    error.code === "EACCES" || error.code === "EPERM"
      ? "add your user to the group that owns the daemon socket, or set DOCKER_HOST"
      : startDaemonHint;
  return new OperationError(
    `cannot connect to the Docker daemon at ${daemonAddress(error)}: ${error.message}`,
    { hint, cause: error },
  );
}

/** Returns the address a connection error was about, as a DOCKER_HOST-style URL. */
function daemonAddress(error: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  // Over SSH the failed connection is to the SSH server, whose address only DOCKER_HOST names.
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith("ssh://")) return host;
  if (error.address?.startsWith("/")) return `unix://${error.address}`;
  if (error.address) return `tcp://${error.address}${error.port ? `:${error.port}` : ""}`;
  return process.env.DOCKER_HOST || "the default socket";
}

export function isErrnoException(
  error: unknown,
): error is NodeJS.ErrnoException & { address?: string; port?: number } {
  return error instanceof Error && "code" in error;
}
