import { formatStep, type BuildStep } from "../docker/progress.js";
import { ExitCode, isModalImageError, type ExitCodeValue } from "../errors.js";
import { stderrStyle } from "./style.js";

export interface ReportOptions {
  json: boolean;
  debug: boolean;
}

/** Prints an error once, on stderr (and as one JSON document on stdout with --json), and returns its exit code. */
export function reportError(error: unknown, options: ReportOptions): ExitCodeValue {
  const style = stderrStyle();
  const known = isModalImageError(error);
  const message = error instanceof Error ? error.message : String(error);
  const exitCode = known ? error.exitCode : ExitCode.failed;
  const lines = [`${style.red("error:")} ${message}`];
  const problems = known && "problems" in error ? (error.problems as readonly string[]) : [];
  for (const problem of problems) lines.push(`  - ${problem}`);
  const stepOutput = (error as { stepOutput?: readonly string[] }).stepOutput;
  const failedStep = (error as { step?: BuildStep }).step;
  const step = failedStep ? formatStep(failedStep) : undefined;
  if (step && stepOutput?.length) {
    lines.push(
      style.dim(`last output of ${step}:`),
      ...stepOutput.map((line) => style.dim(`  ${line}`)),
    );
  }
  if (known && error.hint) lines.push(`${style.cyan("hint:")} ${error.hint}`);
  if (options.debug && error instanceof Error && error.stack) lines.push(style.dim(error.stack));
  else if (!known) lines.push(style.dim("run again with --debug for the stack trace"));
  process.stderr.write(`${lines.join("\n")}\n`);
  if (options.json) {
    const body = {
      error: {
        message,
        exitCode,
        ...(known && error.hint ? { hint: error.hint } : {}),
        ...(problems.length ? { problems } : {}),
        ...(step ? { step } : {}),
      },
    };
    process.stdout.write(`${JSON.stringify(body)}\n`);
  }
  return exitCode;
}
