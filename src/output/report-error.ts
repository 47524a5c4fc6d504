import { formatStep, type BuildStep } from "../docker/progress.js";
import { ExitCode, isModalImageError, type ExitCodeValue } from "../errors.js";
import { stderrStyle } from "./style.js";

export interface ReportOptions {
  json: boolean;
  debug: boolean;
  /** The stderr format; `json` writes one line of type `error` instead of text, for `--progress json`. */
  stderrFormat?: "text" | "json";
}

/** The parts of an error that the CLI prints. */
interface ErrorReport {
  message: string;
  exitCode: ExitCodeValue;
  /** False for errors this tool did not raise on purpose, which are bugs or surprises. */
  expected: boolean;
  hint: string | undefined;
  problems: readonly string[];
  /** The build step that failed, as `step 3/7: RUN ...`. */
  step: string | undefined;
  stepOutput: readonly string[];
  stack: string | undefined;
}

function toReport(error: unknown): ErrorReport {
  const expected = isModalImageError(error);
  const details = error as {
    problems?: readonly string[];
    step?: BuildStep;
    stepOutput?: readonly string[];
  };
  return {
    message: error instanceof Error ? error.message : String(error),
    exitCode: expected ? error.exitCode : ExitCode.failed,
    expected,
    hint: expected ? error.hint : undefined,
    problems: expected ? (details.problems ?? []) : [],
    step: details.step ? formatStep(details.step) : undefined,
    stepOutput: details.stepOutput ?? [],
    stack: error instanceof Error ? error.stack : undefined,
  };
}

function textLines(report: ErrorReport, debug: boolean): string[] {
  const style = stderrStyle();
  const lines = [`${style.red("error:")} ${report.message}`];
  for (const problem of report.problems) lines.push(`  - ${problem}`);

  if (report.step && report.stepOutput.length > 0) {
    lines.push(style.dim(`last output of ${report.step}:`));
    for (const line of report.stepOutput) lines.push(style.dim(`  ${line}`));
  }

  if (report.hint) lines.push(`${style.cyan("hint:")} ${report.hint}`);
  if (debug && report.stack) lines.push(style.dim(report.stack));
  else if (!report.expected) lines.push(style.dim("run again with --debug for the stack trace"));
  return lines;
}

function jsonBody(report: ErrorReport) {
  return {
    message: report.message,
    exitCode: report.exitCode,
    ...(report.hint ? { hint: report.hint } : {}),
    ...(report.problems.length > 0 ? { problems: report.problems } : {}),
    ...(report.step ? { step: report.step } : {}),
  };
}

/**
 * Prints an error once: on stderr as text (or as a JSON line of type `error`), and with --json
 * also as one JSON document on stdout. Returns the exit code for it.
 */
export function reportError(error: unknown, options: ReportOptions): ExitCodeValue {
  const report = toReport(error);
  if (options.stderrFormat === "json") {
    const stack = options.debug && report.stack ? { stack: report.stack } : {};
    const line = { time: new Date().toISOString(), type: "error", ...jsonBody(report), ...stack };
    process.stderr.write(`${JSON.stringify(line)}\n`);
  } else {
    process.stderr.write(`${textLines(report, options.debug).join("\n")}\n`);
  }

  if (options.json) process.stdout.write(`${JSON.stringify({ error: jsonBody(report) })}\n`);
  return report.exitCode;
}
