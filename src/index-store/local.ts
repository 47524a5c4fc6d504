import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ConflictError, NotFoundError, OperationError, UsageError } from "../errors.js";
import { formatNameRef, type NameRef } from "../names.js";
import { mapWithConcurrency } from "../util/concurrency.js";
import {
  expectConflict,
  findValue,
  formatEntry,
  matches,
  parseLog,
  replay,
  rollbackTarget,
  toRecord,
  valueOf,
  type AppliedEntry,
  type LogEntry,
  type Replay,
} from "./log.js";
import type {
  ExpectedValue,
  NameIndex,
  NameListing,
  NewTagValue,
  RollbackOptions,
  TagRecord,
} from "./types.js";

export type { TagRecord } from "./types.js";

// Reading only the end of a long log is enough for its current value in the common case.
const tailBytes = 64 * 1024;
const tagsDir = "_tags";
const logSuffix = ".log";

/**
 * The name index on local disk. Each tag is an append-only log of JSON lines, and its value is
 * the last entry that applied. A change is one O_APPEND write of one line, which Linux applies
 * whole and in order on local file systems. So concurrent writers need no lock and a reader
 * never sees a partial value. A writer killed at any point leaves the old or the new value.
 *
 * Layout: `<home>/index/<name>/_tags/<tag>.log`. `_tags` cannot be a name component, because
 * components start with a lowercase letter or a digit.
 *
 * NOTE: on NFS, O_APPEND writes from several machines are not atomic; use the registry index.
 */
export class LocalIndex implements NameIndex {
  readonly root: string;

  constructor(home: string) {
    this.root = path.join(home, "index");
  }

  private logFile(ref: NameRef): string {
    return path.join(this.root, ref.name, tagsDir, `${ref.tag}${logSuffix}`);
  }

  private async readLog(ref: NameRef): Promise<Replay> {
    return replay(parseLog((await readIfExists(this.logFile(ref))) ?? ""));
  }

  /** Reads only as much of the log as its current value needs. */
  private async readCurrent(ref: NameRef): Promise<AppliedEntry | undefined> {
    const file = this.logFile(ref);
    const tail = await readTail(file, tailBytes);
    if (tail === undefined) return undefined;
    const entries = parseLog(tail.text);
    // From the last entry that applies unconditionally, the rest of the tail decides the value.
    const start = entries.findLastIndex((entry) => entry.expect === undefined);
    if (start >= 0 || !tail.partial) return replay(entries.slice(Math.max(start, 0))).current;
    return (await this.readLog(ref)).current;
  }

  async get(ref: NameRef): Promise<TagRecord | undefined> {
    const current = await this.readCurrent(ref);
    if (valueOf(current) === null) return undefined;
    return toRecord(ref.name, ref.tag, current!.entry);
  }

  async resolve(ref: NameRef): Promise<TagRecord> {
    const record = await this.get(ref);
    if (record) return record;
    const tags = await this.tagRecords(ref.name);
    throw new NotFoundError(`name ${formatNameRef(ref)} not found`, {
      hint:
        tags.length > 0
          ? `${ref.name} has tags ${tags.map((tag) => tag.tag).join(", ")}`
          : `build and publish it first: modal-image build --publish ${formatNameRef(ref)}`,
    });
  }

  private async tagRecords(name: string): Promise<TagRecord[]> {
    const files = await readdirIfExists(path.join(this.root, name, tagsDir));
    const tags = files.filter((entry) => entry.endsWith(logSuffix));
    // Reading the logs a few at a time overlaps the file system's waits.
    const found = await mapWithConcurrency(tags, 16, (file) =>
      this.get({ name, tag: file.slice(0, -logSuffix.length) }),
    );
    const records = found.filter((record): record is TagRecord => record !== undefined);
    return records.sort(
      (a, b) => b.publishedAt.localeCompare(a.publishedAt) || a.tag.localeCompare(b.tag),
    );
  }

  async tags(name: string): Promise<TagRecord[]> {
    const records = await this.tagRecords(name);
    if (records.length === 0) {
      throw new NotFoundError(`name ${name} not found`, {
        hint: `build and publish it first: modal-image build --publish ${name}`,
      });
    }
    return records;
  }

  async history(ref: NameRef): Promise<TagRecord[]> {
    const { applied } = await this.readLog(ref);
    if (applied.length === 0) {
      throw new NotFoundError(`name ${formatNameRef(ref)} has no history`, {
        hint: `build and publish it first: modal-image build --publish ${formatNameRef(ref)}`,
      });
    }
    return applied.map((entry) => toRecord(ref.name, ref.tag, entry.entry)).reverse();
  }

  async publish(ref: NameRef, value: NewTagValue, expect?: ExpectedValue): Promise<TagRecord> {
    const entry = await newEntry({
      action: value.action,
      reference: value.reference,
      digest: value.digest,
      ...(value.image === undefined ? {} : { image: value.image }),
    });
    return this.append(ref, entry, expect);
  }

  async rollback(ref: NameRef, options: RollbackOptions = {}): Promise<TagRecord> {
    const replayed = await this.readLog(ref);
    const label = formatNameRef(ref);
    if (!matches(options.expect, replayed.current))
      throw conflict(label, options.expect, replayed.current);
    const target = options.to ? findValue(replayed, options.to) : rollbackTarget(replayed);
    if (!target) {
      if (options.to) {
        throw new NotFoundError(`${label} never had the value ${options.to}`, {
          hint: `list its values with: modal-image history ${label}`,
        });
      }
      throw new NotFoundError(`${label} has no earlier value to roll back to`, {
        hint: `list its values with: modal-image history ${label}`,
      });
    }
    const entry = await newEntry({
      action: "rollback",
      reference: target.entry.reference,
      digest: target.entry.digest,
      restores: target.entry.id,
      ...(target.entry.image === undefined ? {} : { image: target.entry.image }),
    });
    // The target was chosen from what was read, so the change must apply to that same value.
    return this.append(ref, entry, valueOf(replayed.current));
  }

  async untag(ref: NameRef, expect?: ExpectedValue): Promise<TagRecord> {
    const record = await this.resolve(ref);
    const entry = await newEntry({ action: "untag", reference: null, digest: null });
    await this.append(ref, entry, expect === undefined ? record.digest : expect);
    return record;
  }

  async names(prefix = ""): Promise<NameListing[]> {
    const listings: NameListing[] = [];
    for (const name of await this.walkNames("")) {
      if (!name.startsWith(prefix)) continue;
      const tags = await this.tagRecords(name);
      if (tags.length > 0) listings.push({ name, tags });
    }
    // Byte order, as `names --prefix` compares, not the locale's order.
    return listings.sort((a, b) => Number(a.name > b.name) - Number(a.name < b.name));
  }

  private async walkNames(relative: string): Promise<string[]> {
    const found: string[] = [];
    const entries = await fs
      .readdir(path.join(this.root, relative), { withFileTypes: true })
      .catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return [];
        throw indexFailure(error, path.join(this.root, relative));
      });
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      if (entry.name === tagsDir) found.push(relative);
      else
        found.push(...(await this.walkNames(relative ? `${relative}/${entry.name}` : entry.name)));
    }
    return found;
  }

  /**
   * Appends one entry with one write. An entry with an expected value is then checked against
   * the log: if another writer's line came first and changed the value, it did not apply.
   */
  private async append(ref: NameRef, entry: LogEntry, expect: ExpectedValue): Promise<TagRecord> {
    const file = this.logFile(ref);
    const written: LogEntry = expect === undefined ? entry : { ...entry, expect };
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      const handle = await fs.open(file, "a");
      try {
        await handle.write(formatEntry(written));
        await handle.datasync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw indexFailure(error, file);
    }
    if (expect !== undefined) {
      const replayed = await this.readLog(ref);
      if (replayed.rejected.has(entry.id)) {
        throw conflict(formatNameRef(ref), expect, replayed.rejected.get(entry.id));
      }
    }
    return toRecord(ref.name, ref.tag, written);
  }
}

async function newEntry(
  fields: Pick<LogEntry, "action" | "reference" | "digest" | "image" | "restores">,
): Promise<LogEntry> {
  // Loaded here, because only writes need it and resolve should start fast.
  const { randomBytes } = await import("node:crypto");
  return {
    id: randomBytes(12).toString("hex"),
    ...fields,
    at: new Date().toISOString(),
    host: os.hostname(),
    user: os.userInfo().username,
  };
}

function conflict(
  label: string,
  expect: ExpectedValue,
  current: AppliedEntry | undefined,
): ConflictError {
  return expectConflict(label, expect, valueOf(current));
}

/** Turns a file system error inside the index into an error that names the index's place. */
function indexFailure(error: unknown, file: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) return error;
  return new OperationError(`cannot use the name index file ${file}: ${code}`, {
    hint: "check that MODAL_IMAGE_HOME (default ~/.modal-image) is a writable directory",
    cause: error,
  });
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw indexFailure(error, file);
  }
}

async function readdirIfExists(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw indexFailure(error, dir);
  }
}

/** Reads the last `bytes` of a file; `partial` is true when the start was cut off. */
async function readTail(
  file: string,
  bytes: number,
): Promise<{ text: string; partial: boolean } | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw indexFailure(error, file);
  }
  try {
    const { size } = await handle.stat();
    const start = Math.max(0, size - bytes);
    const buffer = Buffer.alloc(size - start);
    await handle.read(buffer, 0, buffer.length, start);
    let text = buffer.toString("utf8");
    // A cut-off first line is not a whole entry.
    if (start > 0) text = text.slice(text.indexOf("\n") + 1);
    return { text, partial: start > 0 };
  } finally {
    await handle.close();
  }
}

/** Reads `--expect` text: a digest, or `none` for a tag that must not exist. */
export function parseExpected(value: string | undefined): ExpectedValue {
  if (value === undefined) return undefined;
  if (value === "none") return null;
  if (/^sha256:[a-f0-9]{64}$/.test(value)) return value;
  throw new UsageError(`invalid --expect value ${JSON.stringify(value)}`, {
    hint: "use the digest the tag must have (sha256:<64 hex>), or none for a tag that must not exist",
  });
}
