/** Exit codes, as documented in the README. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

interface ErrorDetails {
  /** The next thing the user can do, printed after the message. */
  hint?: string;
  cause?: unknown;
}

/** An error the CLI reports as `error: message` plus a hint, with no stack. */
export class ModalImageError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;

  constructor(message: string, exitCode: ExitCodeValue, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = details.hint;
  }
}

/** Invalid usage, config or input. Raised before any daemon or registry is contacted. */
export class UsageError extends ModalImageError {
  /** Every problem found, each prefixed with its config path where one applies. */
  readonly problems: readonly string[];

  constructor(message: string, details: ErrorDetails & { problems?: readonly string[] } = {}) {
    super(message, ExitCode.usage, details);
    this.problems = details.problems ?? [];
  }
}

/** A name, tag or image that does not exist. */
export class NotFoundError extends ModalImageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, ExitCode.notFound, details);
  }
}

/** A build, push, daemon or registry operation that failed. */
export class OperationError extends ModalImageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, ExitCode.failed, details);
  }
}

/** A tag did not have the value `--expect` named, so it was left as it was. */
export class ConflictError extends ModalImageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, ExitCode.conflict, details);
  }
}

/** The user interrupted the command with SIGINT or SIGTERM. */
export class InterruptedError extends ModalImageError {
  constructor(message = "interrupted", details: ErrorDetails = {}) {
    super(message, ExitCode.interrupted, details);
  }
}

/**
 * Returns the InterruptedError for `action`, naming the cause when the abort reason of `signal`
 * is an Error, such as "received SIGINT".
 */
export function interruptedError(
  signal: AbortSignal | undefined,
  action: string,
): InterruptedError {
  const reason: unknown = signal?.reason;
  const cause = reason instanceof Error ? ` (${reason.message})` : "";
  return new InterruptedError(`${action} interrupted${cause}`);
}

/** Throws the InterruptedError for `action` when `signal` has been aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, action: string): void {
  if (signal?.aborted) throw interruptedError(signal, action);
}

export function isModalImageError(error: unknown): error is ModalImageError {
  return error instanceof ModalImageError;
}
