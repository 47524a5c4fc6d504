import type { DoctorCheck } from "../doctor/check.js";
import { streamStyle } from "./style.js";

/**
 * Writes each check as `STATUS  CHECK  FINDING` on stdout, with a `fix:` line under each one
 * that is not ok. With `quiet`, only the checks that warn or fail.
 */
export function writeDoctorReport(checks: readonly DoctorCheck[], quiet: boolean): void {
  const style = streamStyle(process.stdout);
  const colour = { ok: style.green, warn: style.yellow, fail: style.red, skip: style.dim };
  const shown = quiet
    ? checks.filter((check) => check.status === "warn" || check.status === "fail")
    : checks;
  const nameWidth = Math.max(...checks.map((check) => check.check.length));
  const indent = " ".repeat(4 + 2 + nameWidth + 2);
  for (const check of shown) {
    const status = colour[check.status](check.status.padEnd(4));
    process.stdout.write(`${status}  ${check.check.padEnd(nameWidth)}  ${check.finding}\n`);
    const problems = check.details?.problems;
    if (Array.isArray(problems)) {
      for (const problem of problems) process.stdout.write(`${indent}- ${String(problem)}\n`);
    }
    if (check.fix) process.stdout.write(`${indent}${style.cyan("fix:")} ${check.fix}\n`);
  }
}
