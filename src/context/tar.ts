import { constants } from "node:fs";
import { Readable } from "node:stream";
import { pack, type Header, type Pack } from "tar-stream";
import type { ContextEntry } from "./collect.js";
import { readEntryContent } from "./read-entry.js";

/** A file made by the build itself, such as the Dockerfile, that has no local source. */
export interface GeneratedFile {
  archivePath: string;
  content: string | Uint8Array;
  /** Permission bits; 0o644 when omitted. */
  mode?: number;
}

/**
 * Packs `generated` and then `entries`, in the given order, into an uncompressed tar stream.
 * File contents are streamed one entry at a time with backpressure, so memory stays bounded
 * whatever the total size. The stream fails with an `OperationError` naming the path when a
 * file changed since it was collected.
 *
 * Entries keep their mode and their real mtime in whole seconds, as `docker build` sends them.
 * The classic builder of Engine 20.10 leaves mtime out of its COPY cache key, so a touched file
 * still hits the cache. Owner is uid and gid 0 with no user or group names. tar-stream writes
 * a PAX header for a path or link target too long for ustar, and for any name that is not ASCII.
 * NOTE: hard links are packed as separate regular files, where Docker writes tar link entries.
 */
export function packContext(
  entries: readonly ContextEntry[],
  generated: readonly GeneratedFile[],
): NodeJS.ReadableStream {
  checkUniquePaths(entries, generated);

  const archive = pack();
  writeArchive(archive, entries, generated).then(
    () => archive.finalize(),
    (error: unknown) => archive.destroy(error instanceof Error ? error : new Error(String(error))),
  );
  // tar-stream returns a streamx stream. Wrapping it gives callers Node's stream semantics.
  return Readable.from(archive, { objectMode: false });
}

async function writeArchive(
  archive: Pack,
  entries: readonly ContextEntry[],
  generated: readonly GeneratedFile[],
): Promise<void> {
  for (const file of generated) await writeGenerated(archive, file);
  for (const entry of entries) {
    if (entry.type === "file") {
      await writeFile(archive, entry);
    } else {
      await startEntry(archive, entryHeader(entry)).done;
    }
  }
}

async function writeGenerated(archive: Pack, file: GeneratedFile): Promise<void> {
  const content =
    typeof file.content === "string"
      ? Buffer.from(file.content, "utf8")
      : Buffer.from(file.content.buffer, file.content.byteOffset, file.content.byteLength);
  const header: EntryHeader = {
    name: file.archivePath,
    type: "file",
    mode: (file.mode ?? 0o644) | constants.S_IFREG,
    size: content.byteLength,
    // A fixed mtime keeps the archive identical for identical inputs.
    mtime: new Date(0),
    uid: 0,
    gid: 0,
  };
  await new Promise<void>((resolve, reject) => {
    archive.entry(header, content, (error) => (error ? reject(error) : resolve()));
  });
}

async function writeFile(archive: Pack, entry: ContextEntry): Promise<void> {
  const { sink, done } = startEntry(archive, entryHeader(entry));
  // On an error the caller destroys the archive, which also ends this entry.
  for (const chunk of readEntryContent(entry)) {
    if (!sink.write(chunk)) await drained(sink);
  }
  // streamx types `end` with a required argument. Without data it only ends the stream.
  sink.end(undefined);
  await done;
}

type EntryHeader = Partial<Header> & Pick<Header, "name">;
type EntrySink = ReturnType<Pack["entry"]>;

const TYPE_BITS = {
  file: constants.S_IFREG,
  directory: constants.S_IFDIR,
  symlink: constants.S_IFLNK,
} as const;

function entryHeader(entry: ContextEntry): EntryHeader {
  return {
    name: entry.archivePath,
    type: entry.type,
    // tar-stream replaces a falsy mode with its default, so the type bits keep a mode of 0.
    // It writes only the low 12 bits.
    mode: entry.mode | TYPE_BITS[entry.type],
    size: entry.type === "file" ? entry.size : 0,
    mtime: new Date(Math.max(0, Math.floor(entry.mtimeMs / 1000)) * 1000),
    uid: 0,
    gid: 0,
    ...(entry.linkTarget === undefined ? {} : { linkname: entry.linkTarget }),
  };
}

/** Adds an entry; `done` settles when tar-stream has written it or the archive was destroyed. */
function startEntry(archive: Pack, header: EntryHeader): { sink: EntrySink; done: Promise<void> } {
  let settle: (error?: Error | null) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  // `done` may reject while the caller is still writing. It awaits `done` later or throws.
  done.catch(() => undefined);
  const sink = archive.entry(header, (error) => settle(error));
  // Destroying the archive destroys the entry with the same error, which the archive already
  // reports. streamx emits 'error' like an EventEmitter, so without a listener it would throw.
  sink.on("error", () => undefined);
  return { sink, done };
}

/** Waits for 'drain', or rejects when the entry is or gets destroyed with the archive. */
function drained(stream: EntrySink): Promise<void> {
  if (stream.destroying) return Promise.reject(closedEntryError());
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.off("close", onClose);
      resolve();
    };
    const onClose = (): void => {
      stream.off("drain", onDrain);
      reject(closedEntryError());
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
  });
}

function closedEntryError(): Error {
  return new Error("the tar stream was closed before the entry was written");
}

function checkUniquePaths(
  entries: readonly ContextEntry[],
  generated: readonly GeneratedFile[],
): void {
  const seen = new Set<string>();
  for (const path of [...generated, ...entries].map((item) => item.archivePath)) {
    if (seen.has(path)) throw new Error(`duplicate path in build context archive: ${path}`);
    seen.add(path);
  }
}
