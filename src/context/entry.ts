import { isUtf8 } from "node:buffer";
import { accessSync, constants, lstatSync, readlinkSync, type Stats } from "node:fs";
import { UsageError } from "../errors.js";
import type { ContextEntry } from "./collect.js";

/** The hint for a path that can be left out of a directory source. */
export const EXCLUDE_HINT =
  "inside addLocalDir, exclude it with .dockerignore or the ignore option";

/**
 * Builds the entry for a path that was already `lstat`ed, and rejects sockets, FIFOs and device
 * files. Docker CLI 28 skips sockets with a logged error and copies FIFOs and device nodes into
 * the image, and neither is likely what a user wants.
 */
export function toEntry(archivePath: string, sourcePath: string, stats: Stats): ContextEntry {
  const base = {
    archivePath,
    sourcePath,
    mode: stats.mode & 0o7777,
    mtimeMs: stats.mtimeMs,
    ctimeMs: stats.ctimeMs,
    ino: stats.ino,
    dev: stats.dev,
  };

  if (stats.isFile()) {
    checkReadable(sourcePath);
    return { ...base, type: "file", size: stats.size };
  }
  if (stats.isDirectory()) return { ...base, type: "directory", size: 0 };
  if (stats.isSymbolicLink()) {
    return { ...base, type: "symlink", size: 0, linkTarget: readLinkTarget(sourcePath) };
  }
  throw new UsageError(`cannot add ${sourcePath}: ${describeSpecialFile(stats)} is not supported`, {
    hint: EXCLUDE_HINT,
  });
}

/** Returns the `lstat` of a path, or undefined when it does not exist. */
export function lstatIfExists(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if (hasCode(error, "ENOENT")) return undefined;
    throw unreadablePath(path, error);
  }
}

export function unreadablePath(path: string, cause: unknown): UsageError {
  return new UsageError(`cannot read ${path}: ${describeError(cause)}`, {
    hint: `make it readable or, ${EXCLUDE_HINT}`,
    cause,
  });
}

export function hasCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Reports whether the bytes are valid UTF-8, which alone survives a JavaScript string unchanged. */
export function isValidUtf8(bytes: Buffer): boolean {
  return isUtf8(bytes);
}

export function invalidUtf8Path(path: string): UsageError {
  return new UsageError(`cannot add ${path}: the name is not valid UTF-8`, {
    hint: `rename it with a UTF-8 name or, ${EXCLUDE_HINT}`,
  });
}

/**
 * Throws `UsageError` naming the path when it cannot be read. The Docker CLI also opens every
 * file that is not excluded before it sends the context, and fails with "no permission to read
 * from" on the first that it cannot read.
 */
export function checkReadable(path: string): void {
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    throw unreadablePath(path, error);
  }
}

function readLinkTarget(path: string): string {
  let target: Buffer;
  try {
    target = readlinkSync(path, { encoding: "buffer" });
  } catch (error) {
    throw unreadablePath(path, error);
  }
  if (!isValidUtf8(target)) {
    throw new UsageError(`cannot add ${path}: the symbolic link target is not valid UTF-8`, {
      hint: EXCLUDE_HINT,
    });
  }
  return target.toString("utf8");
}

function describeSpecialFile(stats: Stats): string {
  if (stats.isSocket()) return "a socket";
  if (stats.isFIFO()) return "a FIFO (named pipe)";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  return "this file type";
}
