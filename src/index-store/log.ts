import { ConflictError } from "../errors.js";
import type { ExpectedValue, TagAction, TagRecord } from "./types.js";

/**
 * One line of a tag's log. The log is the tag: its value is the last entry that applied.
 * An entry with `expect` applies only if the tag had that value at the entry's position, so
 * compare-and-swap needs no lock: concurrent writers append, and the order of lines decides.
 */
export interface LogEntry {
  /** Random, unique per entry, so a writer can find its own line again. */
  id: string;
  action: TagAction;
  /** Null for `untag`. */
  reference: string | null;
  digest: string | null;
  /** ISO 8601 time in UTC. */
  at: string;
  host: string;
  user: string;
  image?: string;
  /** The digest the tag must have, or null for "must not exist". Absent: applies always. */
  expect?: string | null;
  /** For a rollback: the id of the entry whose value it restores. */
  restores?: string;
}

/** An entry that applied, linked to the value it replaced. */
export interface AppliedEntry {
  entry: LogEntry;
  before: AppliedEntry | undefined;
}

export interface Replay {
  /** The entry that gives the tag its value now; an `untag` entry means the tag does not exist. */
  current: AppliedEntry | undefined;
  /** Applied entries in log order. */
  applied: AppliedEntry[];
  /** Entries that did not apply because their `expect` did not match, by id, with the value they met. */
  rejected: Map<string, AppliedEntry | undefined>;
}

function isLogEntry(value: unknown): value is LogEntry {
  if (typeof value !== "object" || value === null) return false;
  const entry = value as Record<string, unknown>;
  return (
    typeof entry.id === "string" &&
    typeof entry.action === "string" &&
    typeof entry.at === "string" &&
    (typeof entry.digest === "string" || entry.digest === null) &&
    (typeof entry.reference === "string" || entry.reference === null)
  );
}

/**
 * Parses log text. Blank lines separate entries. A line that is not a whole entry is skipped,
 * because only a writer killed in the middle of its one write() could leave one.
 */
export function parseLog(text: string): LogEntry[] {
  const entries: LogEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const value: unknown = JSON.parse(line);
      if (isLogEntry(value)) entries.push(value);
    } catch {
      // A partial line from an interrupted write: it never applied.
    }
  }
  return entries;
}

/** Serialises an entry. The leading newline ends any partial line an interrupted writer left. */
export function formatEntry(entry: LogEntry): string {
  return `\n${JSON.stringify(entry)}\n`;
}

export function valueOf(applied: AppliedEntry | undefined): string | null {
  if (!applied || applied.entry.action === "untag") return null;
  return applied.entry.digest;
}

export function replay(entries: readonly LogEntry[]): Replay {
  let current: AppliedEntry | undefined;
  const applied: AppliedEntry[] = [];
  const rejected = new Map<string, AppliedEntry | undefined>();
  for (const entry of entries) {
    if (entry.expect !== undefined && entry.expect !== valueOf(current)) {
      rejected.set(entry.id, current);
      continue;
    }
    current = { entry, before: current };
    applied.push(current);
  }
  return { current, applied, rejected };
}

/** Returns whether an expected value matches the current one. */
export function matches(expect: ExpectedValue, current: AppliedEntry | undefined): boolean {
  return expect === undefined || expect === valueOf(current);
}

/**
 * Returns the value a plain rollback goes back to: the value before the one the current entry
 * set. Rolling back a rollback goes one step further back, as undo does.
 */
export function rollbackTarget(replayed: Replay): AppliedEntry | undefined {
  const byId = new Map(replayed.applied.map((applied) => [applied.entry.id, applied]));
  // The entry that first set a value. A rollback counts as the entry it restored.
  const origin = (applied: AppliedEntry): AppliedEntry => {
    const restored = applied.entry.restores ? byId.get(applied.entry.restores) : undefined;
    return restored && restored !== applied ? origin(restored) : applied;
  };
  let candidate = replayed.current ? origin(replayed.current).before : undefined;
  while (candidate && candidate.entry.action === "untag") candidate = origin(candidate).before;
  return candidate;
}

/** Returns the newest applied entry that set `digest`. */
export function findValue(replayed: Replay, digest: string): AppliedEntry | undefined {
  return replayed.applied.findLast(
    (applied) => applied.entry.action !== "untag" && applied.entry.digest === digest,
  );
}

export function toRecord(name: string, tag: string, entry: LogEntry): TagRecord {
  return {
    name,
    tag,
    reference: entry.reference ?? "",
    digest: entry.digest ?? "",
    publishedAt: entry.at,
    action: entry.action,
    ...(entry.image === undefined ? {} : { image: entry.image }),
    host: entry.host,
    user: entry.user,
  };
}

/**
 * Returns the error for a change whose `--expect` value does not match the tag's current value.
 * `expect` is null for `--expect none`, which requires the tag to be unset.
 */
export function expectConflict(
  label: string,
  expect: ExpectedValue,
  actual: string | null,
): ConflictError {
  const message =
    expect === null
      ? `${label} is already set to ${actual ?? "a value"}, and --expect none requires it to be unset; nothing changed`
      : `${label} is ${actual ?? "not set"}, not the expected ${expect ?? "value"}; nothing changed`;
  return new ConflictError(message, {
    hint: `check the current value with: modal-image resolve ${label}`,
  });
}
