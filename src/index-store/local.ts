import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { NotFoundError, OperationError } from "../errors.js";
import { formatNameRef, type NameRef } from "../names.js";

/** The operation that gave a tag its value. */
export type PublishAction = "build" | "publish";

/** The value of one tag: the pinned reference it resolves to, and where it came from. */
export interface TagRecord {
  name: string;
  tag: string;
  /** `REGISTRY/REPO@sha256:...`, or a local image ID `sha256:...` when no registry is set. */
  reference: string;
  /** The manifest digest, or the image ID when no registry is set. */
  digest: string;
  /** ISO 8601 time in UTC. */
  publishedAt: string;
  action: PublishAction;
  /** The image definition the value was built from, where it was built by this tool. */
  image?: string;
  host: string;
  user: string;
}

export type NewTagValue = Pick<TagRecord, "reference" | "digest" | "action" | "image">;

const lockTimeoutMs = 10_000;

/**
 * The name index on local disk. Each tag is one small JSON file. A publish writes the new value
 * to a `.lock` file next to it and renames that over the old file, as git updates refs. So a
 * reader sees the old or the new value and never a partial file. Each tag also has an append-only
 * history with one JSON line per value it has had.
 *
 * Layout under `<home>/index/`: `<name>/_tags/<tag>.json` and `<name>/_history/<tag>.jsonl`.
 * `_tags` cannot collide with a name component, which never starts with `_`.
 */
export class LocalIndex {
  readonly root: string;

  constructor(home: string) {
    this.root = path.join(home, "index");
  }

  private tagFile(ref: NameRef): string {
    return path.join(this.root, ref.name, "_tags", `${ref.tag}.json`);
  }

  private historyFile(ref: NameRef): string {
    return path.join(this.root, ref.name, "_history", `${ref.tag}.jsonl`);
  }

  /** Returns the tag's value, or undefined when the name or tag does not exist. */
  async get(ref: NameRef): Promise<TagRecord | undefined> {
    const text = await readIfExists(this.tagFile(ref));
    return text === undefined ? undefined : parseRecord(text, this.tagFile(ref));
  }

  /** Returns the tag's value, or throws a NotFoundError (exit 3). */
  async resolve(ref: NameRef): Promise<TagRecord> {
    const record = await this.get(ref);
    if (record) return record;
    const tags = await this.tags(ref.name).catch(() => []);
    throw new NotFoundError(`name ${formatNameRef(ref)} not found`, {
      hint:
        tags.length > 0
          ? `${ref.name} has tags ${tags.map((record) => record.tag).join(", ")}`
          : `build and publish it first: modal-image build --publish ${formatNameRef(ref)}`,
    });
  }

  /** Lists a name's tags, newest first; throws a NotFoundError when it has none. */
  async tags(name: string): Promise<TagRecord[]> {
    const dir = path.join(this.root, name, "_tags");
    const files = await fs.readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [];
      throw error;
    });
    const records: TagRecord[] = [];
    for (const file of files.filter((entry) => entry.endsWith(".json"))) {
      const text = await readIfExists(path.join(dir, file));
      if (text !== undefined) records.push(parseRecord(text, path.join(dir, file)));
    }
    if (records.length === 0) {
      throw new NotFoundError(`name ${name} not found`, {
        hint: `build and publish it first: modal-image build --publish ${name}`,
      });
    }
    return records.sort(
      (a, b) => b.publishedAt.localeCompare(a.publishedAt) || a.tag.localeCompare(b.tag),
    );
  }

  /** Points the tag at a new value and appends it to the tag's history. */
  async publish(ref: NameRef, value: NewTagValue): Promise<TagRecord> {
    const record: TagRecord = {
      name: ref.name,
      tag: ref.tag,
      reference: value.reference,
      digest: value.digest,
      publishedAt: new Date().toISOString(),
      action: value.action,
      ...(value.image === undefined ? {} : { image: value.image }),
      host: os.hostname(),
      user: os.userInfo().username,
    };
    const file = this.tagFile(ref);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await replaceUnderLock(file, `${JSON.stringify(record, null, 2)}\n`);
    const history = this.historyFile(ref);
    await fs.mkdir(path.dirname(history), { recursive: true });
    await fs.appendFile(history, `${JSON.stringify(record)}\n`);
    return record;
  }
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

function parseRecord(text: string, file: string): TagRecord {
  try {
    return JSON.parse(text) as TagRecord;
  } catch {
    throw new OperationError(`the name index file ${file} is not valid JSON`, {
      hint: "restore it from its history file next to it, or remove it and publish the tag again",
    });
  }
}

/** Writes `content` to `<file>.lock`, created exclusively, then renames it over `file`. */
async function replaceUnderLock(file: string, content: string): Promise<void> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + lockTimeoutMs;
  for (;;) {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(
        lock,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
        0o644,
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      if (Date.now() > deadline) {
        throw new OperationError(`timed out waiting for the lock ${lock}`, {
          hint: "another publish holds it; if no modal-image process is running, remove the file",
        });
      }
      await sleep(5 + (randomBytes(1)[0]! % 45));
      continue;
    }
    try {
      await handle.writeFile(content);
      await handle.sync();
    } catch (error) {
      await handle.close();
      await fs.rm(lock, { force: true });
      throw error;
    }
    await handle.close();
    await fs.rename(lock, file);
    return;
  }
}
