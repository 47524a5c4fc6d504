import { isAbsolute, posix } from "node:path";
import { UsageError } from "../errors.js";
import { lstatIfExists, toEntry } from "./entry.js";
import { collectDirectory, notFound, symlinkSource } from "./walk.js";
import { compareStrings } from "../util/compare.js";

/** A local file or directory that an image definition adds to the build context. */
export interface ContextSource {
  /**
   * Directory inside the tar, such as `ctx/3`: posix and relative, with no trailing slash.
   * A directory source may use `""`, the root of the tar, which may also hold other prefixes.
   */
  prefix: string;
  /** Absolute local path of the file or directory that the user named. */
  localPath: string;
  kind: "file" | "dir";
  /**
   * For directories only: extra .dockerignore lines, applied after the directory's own
   * .dockerignore, or a predicate on posix paths relative to `localPath` that excludes the
   * paths it returns true for (an excluded directory is skipped whole).
   */
  ignore?: readonly string[] | ((relativePath: string) => boolean);
}

/** One file, directory or symlink of the build context. */
export interface ContextEntry {
  /** Path inside the tar, posix. */
  archivePath: string;
  /** Absolute local path. */
  sourcePath: string;
  type: "file" | "directory" | "symlink";
  /** Permission bits, including setuid, setgid and sticky. */
  mode: number;
  /** Size in bytes, 0 for directories and symlinks. */
  size: number;
  mtimeMs: number;
  /** Inode change time, which moves on every content, mode or mtime change. */
  ctimeMs: number;
  ino: number;
  dev: number;
  /** The symlink's target as stored on disk, never followed. */
  linkTarget?: string;
}

/**
 * Name of an `addLocalFile` entry inside its prefix. It is fixed so that no glob character of
 * the user's file name reaches the Dockerfile.
 */
export const FILE_SOURCE_NAME = "file";

/**
 * Lists the entries of the build context for `sources`, sorted by the UTF-8 bytes of their
 * archive paths. Reads nothing outside each `localPath` and follows no symlink inside it.
 * Throws `UsageError` for a path the user must fix.
 */
export async function collectContext(sources: readonly ContextSource[]): Promise<ContextEntry[]> {
  checkSources(sources);

  const entries: ContextEntry[] = [];
  for (const source of sources) {
    if (source.kind === "file") {
      entries.push(collectFile(source));
    } else {
      entries.push(...(await collectDirectory(source)));
    }
  }
  return sortByArchivePath(entries);
}

/** Sorts by UTF-8 byte order, which differs from JavaScript's UTF-16 order above U+FFFF. */
export function sortByArchivePath(entries: readonly ContextEntry[]): ContextEntry[] {
  // Below U+D800 the two orders agree, so the common case needs no byte copies of the paths.
  if (!entries.some((entry) => /[\uD800-\uFFFF]/.test(entry.archivePath))) {
    return [...entries].sort((a, b) => compareStrings(a.archivePath, b.archivePath));
  }
  return entries
    .map((entry) => ({ entry, key: Buffer.from(entry.archivePath, "utf8") }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ entry }) => entry);
}

function collectFile(source: ContextSource): ContextEntry {
  const path = source.localPath;
  const stats = lstatIfExists(path);
  if (stats === undefined) throw notFound(path);
  if (stats.isSymbolicLink()) throw symlinkSource(path);
  if (stats.isDirectory()) {
    throw new UsageError(`addLocalFile path is a directory: ${path}`, {
      hint: "use addLocalDir for a directory",
    });
  }
  return toEntry(`${source.prefix}/${FILE_SOURCE_NAME}`, path, stats);
}

// Prefixes and absolute paths are the caller's contract, so a violation is a bug, not a UsageError.
function checkSources(sources: readonly ContextSource[]): void {
  const prefixes: string[] = [];
  for (const source of sources) {
    if (!isAbsolute(source.localPath)) {
      throw new Error(`context source path must be absolute: ${source.localPath}`);
    }
    if (!isValidPrefix(source.prefix) || (source.prefix === "" && source.kind === "file")) {
      throw new Error(`invalid context prefix: ${JSON.stringify(source.prefix)}`);
    }
    // The root prefix "" may hold other prefixes; packContext still rejects a duplicate path.
    const overlap = prefixes.find(
      (other) => other !== "" && source.prefix !== "" && overlaps(other, source.prefix),
    );
    if (overlap !== undefined) {
      throw new Error(`context prefixes overlap: ${overlap} and ${source.prefix}`);
    }
    prefixes.push(source.prefix);
  }
}

function isValidPrefix(prefix: string): boolean {
  if (prefix === "") return true;
  return (
    posix.normalize(prefix) === prefix &&
    !prefix.startsWith("/") &&
    !prefix.endsWith("/") &&
    prefix !== "." &&
    prefix !== ".." &&
    !prefix.startsWith("../")
  );
}

function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
