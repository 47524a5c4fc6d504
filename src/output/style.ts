import { Chalk, type ChalkInstance } from "chalk";

/**
 * Returns a chalk instance for a stream. chalk 5 reads FORCE_COLOR and whether stdout is a
 * terminal, but not NO_COLOR, so NO_COLOR (any non-empty value, see no-color.org) is applied
 * here. FORCE_COLOR wins over NO_COLOR, as in Node's own util.inspect.
 */
export function streamStyle(
  stream: NodeJS.WriteStream,
  env: NodeJS.ProcessEnv = process.env,
): ChalkInstance {
  const forced =
    env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0" && env.FORCE_COLOR !== "false";
  if (!forced && env.NO_COLOR) return new Chalk({ level: 0 });
  if (forced) return new Chalk({ level: Math.max(1, new Chalk().level) as 1 | 2 | 3 });
  return new Chalk({ level: stream.isTTY ? new Chalk().level : 0 });
}

/** Returns a chalk instance for stderr, where logs, progress and errors go. */
export function stderrStyle(env: NodeJS.ProcessEnv = process.env): ChalkInstance {
  return streamStyle(process.stderr, env);
}
