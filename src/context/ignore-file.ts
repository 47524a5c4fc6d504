import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "../errors.js";
import { describeError, hasCode } from "./entry.js";
import { cleanPath, trimSpace } from "./pattern-matcher.js";

export const IGNORE_FILE_NAME = ".dockerignore";

/**
 * Normalizes .dockerignore lines as Docker's `ignorefile.ReadAll` does: drops comments (`#` in
 * the first column) and blank lines, trims spaces, cleans the path and strips a leading `/`
 * while keeping a leading `!`.
 */
export function parseIgnoreLines(lines: readonly string[]): string[] {
  const patterns: string[] = [];

  for (const line of lines) {
    if (line.startsWith("#")) continue;
    let pattern = trimSpace(line);
    if (pattern === "") continue;

    const exclusion = pattern.startsWith("!");
    if (exclusion) pattern = trimSpace(pattern.slice(1));
    if (pattern !== "") {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    patterns.push(exclusion ? `!${pattern}` : pattern);
  }
  return patterns;
}

/** Splits file text into lines as Go's `bufio.ScanLines` does, after dropping a UTF-8 BOM. */
export function splitIgnoreFile(text: string): string[] {
  const withoutBom = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const lines = withoutBom
    .split("\n")
    .map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line));
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/**
 * Reads the lines of `directory/.dockerignore`, or returns undefined when there is none.
 * A symlink is rejected rather than followed, so that nothing outside the directory is read.
 */
export async function readIgnoreFile(directory: string): Promise<string[] | undefined> {
  const path = join(directory, IGNORE_FILE_NAME);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if (hasCode(error, "ENOENT")) return undefined;
    throw unreadableIgnoreFile(path, error);
  }

  try {
    if (!(await handle.stat()).isFile()) throw unreadableIgnoreFile(path, undefined);
    return splitIgnoreFile(await handle.readFile("utf8"));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw unreadableIgnoreFile(path, error);
  } finally {
    await handle.close();
  }
}

function unreadableIgnoreFile(path: string, cause: unknown): UsageError {
  return new UsageError(`cannot read ${path}: ${describeIgnoreFileError(cause)}`, {
    hint: "make .dockerignore a readable regular file inside the directory",
    cause,
  });
}

function describeIgnoreFileError(cause: unknown): string {
  if (cause === undefined) return "it is not a regular file";
  // O_NOFOLLOW makes open fail with ELOOP on a symlink.
  if (hasCode(cause, "ELOOP")) return "it is a symbolic link";
  return describeError(cause);
}
