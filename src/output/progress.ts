import type { Ora } from "ora";
import type { BuildEvent, PushEvent } from "../docker/progress.js";
import { formatStep } from "../docker/progress.js";
import { stderrStyle } from "./style.js";

/** A progress event of build, push, pull or publish. Renderers print them to stderr only. */
export type ProgressEvent =
  | {
      type: "phase";
      image: string;
      phase: "build" | "cached" | "push" | "pull" | "publish";
      detail?: string;
    }
  | { type: "build"; image: string; event: BuildEvent }
  | { type: "push"; image: string; event: PushEvent }
  | { type: "done"; image: string; reference: string };

export type ProgressMode = "spinner" | "plain" | "verbose" | "quiet";

/** Seconds of silence after which plain progress repeats the current step. */
const heartbeatSeconds = 30;

/** Returns whether `CI` is set to anything but an empty string, `0` or `false`. */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.toLowerCase();
  return value !== undefined && value !== "" && value !== "0" && value !== "false";
}

export function chooseProgressMode(options: { verbose: boolean; quiet?: boolean }): ProgressMode {
  if (options.quiet) return "quiet";
  if (options.verbose) return "verbose";
  // CI logs keep every line, so a spinner that redraws one line would lose them.
  if (!process.stderr.isTTY || isCI()) return "plain";
  // ora 9.4 divides by the column count to clear lines, and loops forever when it is 0, as on a
  // terminal that `script` opens without a size.
  if (!process.stderr.columns) return "plain";
  return "spinner";
}

export interface ProgressRenderer {
  onEvent(event: ProgressEvent): void;
  /** Stops the spinner, if any, before an error is printed. */
  stop(): void;
}

/** Renders progress as a spinner on a terminal, or as plain lines for logs. */
export async function createProgressRenderer(mode: ProgressMode): Promise<ProgressRenderer> {
  const style = stderrStyle();
  const write = (line: string) => process.stderr.write(`${line}\n`);
  let spinner: Ora | undefined;
  if (mode === "spinner") {
    const { default: ora } = await import("ora");
    // ora colours through its own chalk, which ignores NO_COLOR, so colour comes from `style`.
    spinner = ora({
      stream: process.stderr,
      discardStdin: false,
      color: style.level > 0 ? "cyan" : false,
    });
  }
  let lastLine = "";
  let lastLineAt = Date.now();
  const say = (line: string) => {
    lastLine = line;
    lastLineAt = Date.now();
    if (spinner) {
      if (!spinner.isSpinning) spinner.start(line);
      else spinner.text = line;
    } else if (mode !== "quiet") write(line);
  };
  // A plain log shows nothing new while one step runs for minutes, so repeat it now and then.
  const heartbeat =
    mode === "plain"
      ? setInterval(() => {
          const seconds = Math.round((Date.now() - lastLineAt) / 1000);
          if (lastLine && seconds >= heartbeatSeconds)
            write(`${lastLine} (still running, ${seconds} s)`);
        }, heartbeatSeconds * 1000).unref()
      : undefined;
  let lastPushStatus = "";
  return {
    onEvent(event) {
      switch (event.type) {
        case "phase":
          return say(
            `${style.bold(event.image)}: ${event.phase}${event.detail ? ` ${event.detail}` : ""}`,
          );
        case "build":
          if (event.event.type === "step")
            return say(`${style.bold(event.image)}: ${formatStep(event.event)}`);
          if (event.event.type === "output" && mode === "verbose") {
            return write(event.event.text.replace(/\n$/, ""));
          }
          if (event.event.type === "status" && mode === "verbose") return write(event.event.text);
          return;
        case "push": {
          // Layer progress arrives many times a second; plain logs get each distinct status once.
          const text = `${event.event.id ? `${event.event.id}: ` : ""}${event.event.text}`;
          if (mode === "verbose" && text !== lastPushStatus) write(text);
          lastPushStatus = text;
          return;
        }
        case "done":
          if (spinner) {
            spinner.stopAndPersist({
              symbol: style.green("✔"),
              text: `${style.bold(event.image)}: ${event.reference}`,
            });
          } else if (mode !== "quiet") write(`${style.bold(event.image)}: done ${event.reference}`);
          return;
      }
    },
    stop() {
      clearInterval(heartbeat);
      if (spinner?.isSpinning) spinner.stop();
    },
  };
}
