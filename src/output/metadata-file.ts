import fs from "node:fs/promises";
import path from "node:path";
import type { BuildResult, BuiltImage } from "../commands/build.js";
import { OperationError, UsageError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-write.js";

/**
 * One image in the metadata file: its `build --json` object, plus the keys that
 * `docker buildx build --metadata-file` writes, so that scripts written for buildx can read it.
 */
export type MetadataEntry = BuiltImage & {
  /** The image ID, which is the digest of the image's config. */
  "containerimage.config.digest": string;
  /** The registry's manifest digest; absent without a registry, where no manifest was pushed. */
  "containerimage.digest"?: string;
};

function invalidPath(file: string, problem: string, hint: string): UsageError {
  return new UsageError(`invalid --metadata-file ${JSON.stringify(file)}: ${problem}`, { hint });
}

/**
 * Checks, before anything is built, that the metadata file can be written: its directory exists
 * and is writable, and the path is a regular file or nothing yet. Returns the path to write,
 * absolute and with symbolic links resolved, so that the rename replaces the link's target, or
 * creates it when the link dangles.
 */
export async function checkMetadataPath(file: string, cwd = process.cwd()): Promise<string> {
  if (file === "") {
    throw invalidPath(file, "the path is empty", "give a file path such as build-metadata.json");
  }

  const absolute = path.resolve(cwd, file);
  const existing = await fs.stat(absolute).catch(() => undefined);
  const link = await fs.lstat(absolute).catch(() => undefined);
  if (existing === undefined && link?.isSymbolicLink()) {
    // A link to a file not written yet: the write creates the file at the end of the chain.
    const target = await followLinks(file, absolute);
    await checkDirectory(file, path.dirname(target));
    return target;
  }
  if (existing?.isDirectory()) {
    const hint = `name a file inside it: ${path.join(file, "metadata.json")}`;
    throw invalidPath(file, "it is a directory", hint);
  }
  if (existing && !existing.isFile()) {
    const hint = "name a regular file or a new path";
    throw invalidPath(file, "it exists and is not a regular file", hint);
  }

  const target = existing ? await fs.realpath(absolute) : absolute;
  await checkDirectory(file, path.dirname(target));
  return target;
}

/** Maximum number of symbolic links followed in one path, as in Linux path resolution. */
const maxLinkHops = 40;

/** Follows a chain of symbolic links to the first path that is not one. */
async function followLinks(file: string, start: string): Promise<string> {
  let current = start;
  for (let hops = 0; hops <= maxLinkHops; hops++) {
    const stats = await fs.lstat(current).catch(() => undefined);
    if (!stats?.isSymbolicLink()) return current;
    current = path.resolve(path.dirname(current), await fs.readlink(current));
  }
  const hint = "point the link at a file path, not at a chain of links that loops";
  throw invalidPath(file, `it leads through more than ${maxLinkHops} symbolic links`, hint);
}

async function checkDirectory(file: string, dir: string): Promise<void> {
  const stats = await fs.stat(dir).catch(() => undefined);
  if (!stats) {
    throw invalidPath(file, `directory ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  }
  if (!stats.isDirectory()) {
    throw invalidPath(file, `${dir} is not a directory`, "name a path inside a directory");
  }
  try {
    await fs.access(dir, fs.constants.W_OK);
  } catch {
    const hint = "choose a directory you can write to";
    throw invalidPath(file, `directory ${dir} is not writable`, hint);
  }
}

/** Returns the metadata file's content: an object keyed by definition key. */
export function metadataOf(result: BuildResult): Record<string, MetadataEntry> {
  const entries: Record<string, MetadataEntry> = {};
  for (const image of result.images) {
    entries[image.image] = {
      ...image,
      "containerimage.config.digest": image.imageId,
      ...(image.repository === undefined ? {} : { "containerimage.digest": image.digest }),
    };
  }
  return entries;
}

/**
 * Writes the metadata of a successful build to `file` atomically: to a temporary file in the
 * same directory, flushed to disk, then renamed over `file`. A reader sees the old file or the
 * whole new one, and a failure leaves the old file as it was.
 */
export async function writeMetadataFile(file: string, result: BuildResult): Promise<void> {
  try {
    await writeFileAtomically(file, `${JSON.stringify(metadataOf(result), null, 2)}\n`, {
      sync: true,
    });
  } catch (error) {
    const published = result.images.some((image) => image.published.length > 0);
    throw new OperationError(
      `the build succeeded${published ? " and its names were published" : ""}, but writing the metadata file ${file} failed: ${(error as Error).message}`,
      {
        hint: "fix the file's directory, then run the build again; it reuses the images just built",
        cause: error,
      },
    );
  }
}
