import { ExitCode } from "./errors.js";

/** Time that cleanup gets after the first signal before the process exits anyway. */
const cleanupGraceMs = 10_000;

/** Commands running now that must clean up before the process exits, such as `run`. */
let pendingCleanups = 0;

/**
 * Marks work that must be cleaned up before the process exits, such as a running container,
 * until the returned function is called. While any is marked, a reader that closes stdout
 * aborts the work, as a signal does, instead of ending the process at once.
 */
export function holdForCleanup(): () => void {
  pendingCleanups += 1;
  let released = false;
  return () => {
    if (!released) pendingCleanups -= 1;
    released = true;
  };
}

/**
 * Installs the CLI's process handlers and returns the signal that the first SIGINT or SIGTERM
 * aborts. Both entry points, the full CLI and the fast path, call it once.
 */
export function installProcessHandlers(): AbortSignal {
  const interruption = new AbortController();
  let stdoutClosed = false;

  // A reader that closes early, as `modal-image tags x | head -1` does, is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    // Writes after the reader went away fail again, and those failures add nothing.
    if (stdoutClosed) return;
    if (error.code !== "EPIPE") throw error;
    stdoutClosed = true;
    if (pendingCleanups === 0) process.exit(process.exitCode ?? ExitCode.ok);
    // `run | head` must still remove its container, so the work is aborted like on a signal.
    startGraceTimer();
    interruption.abort(new Error("the reader of stdout closed it"));
  });

  let signalCount = 0;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      signalCount += 1;
      // The first signal aborts the daemon's work and lets cleanup (removing the build or run
      // container) finish. A quick second Ctrl-C must not cut that short, so only a third
      // exits at once.
      if (signalCount === 2) {
        process.stderr.write("cleaning up; interrupt once more to exit without cleanup\n");
      }
      if (signalCount > 2) process.exit(ExitCode.interrupted);
      if (signalCount === 1) startGraceTimer();
      interruption.abort(new Error(`received ${signal}`));
    });
  }
  return interruption.signal;
}

/**
 * Exits after `cleanupGraceMs`, because work that does not watch the signal, such as a config
 * that never finishes loading or a daemon that never responds, must not keep the process alive.
 */
function startGraceTimer(): void {
  setTimeout(() => {
    process.stderr.write(
      `error: interrupted; cleanup did not finish within ${cleanupGraceMs / 1000} s\n`,
    );
    process.exit(ExitCode.interrupted);
  }, cleanupGraceMs).unref();
}
