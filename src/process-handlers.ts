import { ExitCode } from "./errors.js";

/** Time that cleanup gets after the first signal before the process exits anyway. */
const cleanupGraceMs = 10_000;

/**
 * Installs the CLI's process handlers and returns the signal that the first SIGINT or SIGTERM
 * aborts. Both entry points, the full CLI and the fast path, call it once.
 */
export function installProcessHandlers(): AbortSignal {
  // A reader that closes early, as `modal-image tags x | head -1` does, is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? ExitCode.ok);
    throw error;
  });

  const interruption = new AbortController();
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
      if (signalCount === 1) {
        // Work that does not watch the signal, such as a config that never finishes loading or
        // a daemon that never responds, must not keep the process alive after one signal.
        setTimeout(() => {
          process.stderr.write(
            `error: interrupted; cleanup did not finish within ${cleanupGraceMs / 1000} s\n`,
          );
          process.exit(ExitCode.interrupted);
        }, cleanupGraceMs).unref();
      }
      interruption.abort(new Error(`received ${signal}`));
    });
  }
  return interruption.signal;
}
