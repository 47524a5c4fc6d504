import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { ContextEntry, ContextSource } from "./collect.js";
import { digestFileContent, type FileDigester } from "./hash.js";
import { writeFileAtomically } from "../util/atomic-write.js";

/** One file's stat key and content digest, as stored in a cache file. */
interface CachedDigest {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
  digest: string;
}

interface CacheFile {
  version: typeof cacheVersion;
  /** The source's absolute local path, checked on load against a file name collision. */
  source: string;
  files: Record<string, CachedDigest>;
}

const cacheVersion = 1;

/** Cache files kept under the cache directory; the least recently written go first. */
const maxCacheFiles = 256;

/**
 * A file whose mtime is this close to the start of hashing may still change within the same
 * mtime tick without its stat changing, so its digest is not stored. Two seconds covers the
 * coarsest common mtime resolution (FAT's).
 */
const racyWindowMs = 2000;

/** Directory of the per-source cache files under `$MODAL_IMAGE_HOME`. */
export function fileDigestCacheDir(home: string): string {
  return path.join(home, "cache", "file-digests");
}

/** Counts of file digests taken from the cache and computed by reading the file. */
export interface DigestCounts {
  reused: number;
  read: number;
}

/**
 * Caches the content digest of context files, keyed by absolute path, size, mtime, ctime,
 * inode and device, with one JSON file per context source. A file whose stat key is unchanged
 * is not read again. A missing or corrupt cache file counts as empty.
 */
export class FileDigestCache {
  readonly counts: DigestCounts = { reused: 0, read: 0 };
  private readonly startedAt = Date.now();
  private readonly previous = new Map<string, CachedDigest>();
  /** Digests seen in this run, per source path: the next content of each cache file. */
  private readonly next = new Map<string, Map<string, CachedDigest>>();

  private constructor(
    private readonly directory: string,
    private readonly sources: readonly string[],
  ) {}

  /** Loads the cache files of `sources` from `$MODAL_IMAGE_HOME/cache`. */
  static async open(home: string, sources: readonly ContextSource[]): Promise<FileDigestCache> {
    const paths = [...new Set(sources.map((source) => source.localPath))];
    // Sorted by decreasing length, so that an entry belongs to the innermost source containing it.
    paths.sort((a, b) => b.length - a.length);
    const cache = new FileDigestCache(fileDigestCacheDir(home), paths);
    for (const source of paths) {
      await readCacheFile(cache.fileFor(source), source, cache.previous);
    }
    return cache;
  }

  /** Returns the entry's content digest, reading the file only when its stat key changed. */
  readonly digest: FileDigester = (entry) => {
    const cached = this.previous.get(entry.sourcePath);
    if (cached !== undefined && sameStat(cached, entry)) {
      this.counts.reused += 1;
      if (entry.mtimeMs < this.startedAt - racyWindowMs) this.remember(entry.sourcePath, cached);
      return cached.digest;
    }
    this.counts.read += 1;
    const digest = digestFileContent(entry);
    if (entry.mtimeMs < this.startedAt - racyWindowMs) {
      const { size, mtimeMs, ctimeMs, ino, dev } = entry;
      this.remember(entry.sourcePath, { size, mtimeMs, ctimeMs, ino, dev, digest });
    }
    return digest;
  };

  /**
   * Writes each source's cache file, holding only the files seen in this run, through a
   * temporary file and a rename. When this run read no file and remembered as many as it
   * loaded, the files would come out the same, so it only updates their mtimes, which pruning
   * goes by. A write failure is ignored, because the cache only saves time.
   */
  async save(): Promise<void> {
    let remembered = 0;
    for (const files of this.next.values()) remembered += files.size;
    if (this.counts.read === 0 && remembered === this.previous.size) {
      const now = new Date();
      for (const source of this.sources) {
        await fs.utimes(this.fileFor(source), now, now).catch(() => undefined);
      }
      return;
    }
    try {
      await fs.mkdir(this.directory, { recursive: true });
      for (const source of this.sources) {
        const files = Object.fromEntries(this.next.get(source) ?? []);
        const content: CacheFile = { version: cacheVersion, source, files };
        await writeFileAtomically(this.fileFor(source), JSON.stringify(content));
      }
      await pruneCacheFiles(this.directory);
    } catch {
      // NOTE: a read-only or full $MODAL_IMAGE_HOME makes every build read every file again.
    }
  }

  private remember(sourcePath: string, cached: CachedDigest): void {
    const source = this.sources.find((candidate) => contains(candidate, sourcePath));
    if (source === undefined) return;
    let files = this.next.get(source);
    if (files === undefined) {
      files = new Map();
      this.next.set(source, files);
    }
    files.set(sourcePath, cached);
  }

  private fileFor(source: string): string {
    const name = createHash("sha256").update(source).digest("hex").slice(0, 32);
    return path.join(this.directory, `${name}.json`);
  }
}

function sameStat(cached: CachedDigest, entry: ContextEntry): boolean {
  return (
    cached.size === entry.size &&
    cached.mtimeMs === entry.mtimeMs &&
    cached.ctimeMs === entry.ctimeMs &&
    cached.ino === entry.ino &&
    cached.dev === entry.dev
  );
}

function contains(directory: string, file: string): boolean {
  return (
    file === directory ||
    file.startsWith(directory.endsWith(path.sep) ? directory : `${directory}${path.sep}`)
  );
}

/** Adds the valid entries of a source's cache file to `into`. A missing or corrupt file adds none. */
async function readCacheFile(
  file: string,
  source: string,
  into: Map<string, CachedDigest>,
): Promise<void> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readFile(file, "utf8"));
  } catch {
    return;
  }
  if (!isCacheFile(parsed) || parsed.source !== source) return;
  // A for-in loop, because Object.entries would copy 20,000 entries into pairs first.
  for (const name in parsed.files) {
    const cached = parsed.files[name];
    if (isCachedDigest(cached)) into.set(name, cached);
  }
}

function isCacheFile(value: unknown): value is CacheFile {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return (
    record.version === cacheVersion &&
    typeof record.source === "string" &&
    typeof record.files === "object" &&
    record.files !== null
  );
}

function isCachedDigest(value: unknown): value is CachedDigest {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  const numbers = ["size", "mtimeMs", "ctimeMs", "ino", "dev"] as const;
  return (
    numbers.every((key) => typeof record[key] === "number") &&
    typeof record.digest === "string" &&
    /^sha256:[0-9a-f]{64}$/.test(record.digest)
  );
}

/** Removes the least recently written cache files beyond `maxCacheFiles`. */
async function pruneCacheFiles(directory: string): Promise<void> {
  const names = (await fs.readdir(directory)).filter((name) => name.endsWith(".json"));
  if (names.length <= maxCacheFiles) return;
  const files = await Promise.all(
    names.map(async (name) => {
      const file = path.join(directory, name);
      const stats = await fs.stat(file).catch(() => undefined);
      return { file, mtimeMs: stats?.mtimeMs ?? 0 };
    }),
  );
  files.sort((a, b) => a.mtimeMs - b.mtimeMs);
  for (const { file } of files.slice(0, files.length - maxCacheFiles)) {
    await fs.rm(file, { force: true });
  }
}
