import type { Ora } from "ora";
import type { BuildEvent, PullEvent, PushEvent } from "../docker/progress.js";
import { formatStep } from "../docker/progress.js";
import { UsageError } from "../errors.js";
import { toJsonEvent } from "./progress-json.js";
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
  | { type: "pull"; image: string; event: PullEvent }
  | { type: "done"; image: string; reference: string };

/**
 * The form of progress on stderr. `spinner` redraws one line on a terminal, and `steps` prints
 * one line per step. `plain` adds the build output and transfer statuses. `json` prints every
 * event as one JSON object per line, and `quiet` prints nothing.
 */
export type ProgressMode = "spinner" | "steps" | "plain" | "json" | "quiet";

/** Values of `--progress` and `MODAL_IMAGE_PROGRESS`. */
export const progressChoices = ["auto", "plain", "json"] as const;

export const progressVariable = "MODAL_IMAGE_PROGRESS";

/** Seconds of silence after which step lines repeat the current step. */
const heartbeatSeconds = 30;

/** Returns whether `CI` is set to anything but an empty string, `0` or `false`. */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.toLowerCase();
  return value !== undefined && value !== "" && value !== "0" && value !== "false";
}

export interface ProgressSettings {
  /** The `--progress` value. */
  progress?: string | undefined;
  /** `--verbose`, the same as `--progress plain`. */
  verbose?: boolean | undefined;
  quiet?: boolean | undefined;
  env?: NodeJS.ProcessEnv;
}

function checkChoice(value: string, source: string): (typeof progressChoices)[number] {
  const choice = progressChoices.find((candidate) => candidate === value);
  if (choice) return choice;
  throw new UsageError(`invalid ${source} ${JSON.stringify(value)}`, {
    hint: `use one of ${progressChoices.join(", ")}`,
  });
}

/**
 * Chooses the progress mode from `--progress`, `--verbose`, `--quiet` and MODAL_IMAGE_PROGRESS,
 * in that order. Throws a UsageError for an invalid value or for options that contradict.
 */
export function chooseProgressMode(settings: ProgressSettings): ProgressMode {
  const env = settings.env ?? process.env;
  const option =
    settings.progress === undefined
      ? undefined
      : checkChoice(settings.progress, "--progress value");
  if (settings.verbose && option !== undefined && option !== "plain") {
    throw new UsageError(`--verbose conflicts with --progress ${option}`, {
      hint: "--verbose is the same as --progress plain; give only one of them",
    });
  }
  if (settings.quiet && (settings.verbose || (option !== undefined && option !== "auto"))) {
    const other = settings.verbose ? "--verbose" : `--progress ${option}`;
    throw new UsageError(`--quiet conflicts with ${other}`, {
      hint: "--quiet shows no progress; drop one of the two options",
    });
  }
  if (settings.quiet) return "quiet";

  // The variable is only a default, so an option given on the command line wins even over an
  // invalid value.
  let choice: (typeof progressChoices)[number] = option ?? (settings.verbose ? "plain" : "auto");
  if (option === undefined && !settings.verbose && env[progressVariable]) {
    choice = checkChoice(env[progressVariable], progressVariable);
  }
  if (choice !== "auto") return choice;
  // CI logs keep every line, so a spinner that redraws one line would lose them.
  if (!process.stderr.isTTY || isCI(env)) return "steps";
  // ora 9.4 divides by the column count to clear lines, and loops forever when it is 0, as on a
  // terminal that `script` opens without a size.
  if (!process.stderr.columns) return "steps";
  return "spinner";
}

export interface ProgressRenderer {
  onEvent(event: ProgressEvent): void;
  /** Stops the spinner, if any, before an error is printed. */
  stop(): void;
}

function writeLine(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Renders progress as a spinner on a terminal, as lines for logs, or as JSON lines. */
export async function createProgressRenderer(mode: ProgressMode): Promise<ProgressRenderer> {
  if (mode === "json") {
    return {
      onEvent: (event) => writeLine(JSON.stringify(toJsonEvent(event))),
      stop: () => {},
    };
  }
  if (mode === "quiet") return { onEvent: () => {}, stop: () => {} };
  return createTextRenderer(mode);
}

async function createTextRenderer(mode: "spinner" | "steps" | "plain"): Promise<ProgressRenderer> {
  const style = stderrStyle();
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
    } else writeLine(line);
  };
  // A log shows nothing new while one step runs for minutes, so repeat it now and then.
  const heartbeat =
    mode === "steps"
      ? setInterval(() => {
          const seconds = Math.round((Date.now() - lastLineAt) / 1000);
          if (lastLine && seconds >= heartbeatSeconds)
            writeLine(`${lastLine} (still running, ${seconds} s)`);
        }, heartbeatSeconds * 1000).unref()
      : undefined;
  let lastTransferStatus = "";
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
          if (event.event.type === "output" && mode === "plain") {
            return writeLine(event.event.text.replace(/\n$/, ""));
          }
          if (event.event.type === "status" && mode === "plain") return writeLine(event.event.text);
          return;
        case "push":
        case "pull": {
          // Layer progress arrives many times a second; a log gets each distinct status once.
          const text = `${event.event.id ? `${event.event.id}: ` : ""}${event.event.text}`;
          if (mode === "plain" && text !== lastTransferStatus) writeLine(text);
          lastTransferStatus = text;
          return;
        }
        case "done":
          if (spinner) {
            spinner.stopAndPersist({
              symbol: style.green("✔"),
              text: `${style.bold(event.image)}: ${event.reference}`,
            });
          } else writeLine(`${style.bold(event.image)}: done ${event.reference}`);
          return;
      }
    },
    stop() {
      clearInterval(heartbeat);
      if (spinner?.isSpinning) spinner.stop();
    },
  };
}
