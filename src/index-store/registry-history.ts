import { createHash } from "node:crypto";
import { reservedTagPrefix } from "../names.js";
import { MediaType, sha256Digest, type Descriptor } from "../registry/manifest.js";
import { parseLog, type LogEntry } from "./log.js";

/**
 * The registry index keeps each tag's history as small OCI artifact manifests, one per change,
 * each under its own reserved tag, so machines that share a registry share the history.
 *
 * An entry's manifest has the OCI 1.1 empty config (`application/vnd.oci.empty.v1+json`, the
 * two bytes `{}`), that same empty descriptor as its one layer, an `artifactType`, and the
 * `LogEntry` JSON in an annotation. Its tag is
 * `_h-<first 16 hex of sha256(TAG)>-<time in ms, base 36, 9 digits>-<entry id>`, so sorting the
 * tags of one TAG orders its entries by time, then id.
 */

/** The two-byte blob `{}` that the empty descriptor points at. */
export const emptyBlob = Buffer.from("{}");

export const emptyDescriptor: Descriptor = {
  mediaType: MediaType.ociEmpty,
  digest: sha256Digest(emptyBlob),
  size: emptyBlob.length,
};

export const historyArtifactType = "application/vnd.dev.modal-image.history.v1";
export const untaggedArtifactType = "application/vnd.dev.modal-image.untagged.v1";

/** Annotation keys on history and tombstone manifests. */
export const Annotation = {
  tag: "dev.modal-image.tag",
  entry: "dev.modal-image.history.entry",
  untagged: "dev.modal-image.untagged",
} as const;

const historyTagPrefix = `${reservedTagPrefix}h-`;
const tagHashLength = 16;
/** Base-36 digits of the time part; 9 digits last until the year 5188. */
const timeDigits = 9;

/**
 * The manifest an untagged tag points at. Distribution 2.8 cannot delete one tag: DELETE by tag
 * fails with DIGEST_INVALID, and DELETE by digest removes every tag on that manifest. Its bytes
 * are fixed, so its digest is a constant that readers treat as "no value".
 */
export const tombstoneManifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: untaggedArtifactType,
    config: emptyDescriptor,
    layers: [emptyDescriptor],
    annotations: { [Annotation.untagged]: "true" },
  }),
);

export const tombstoneDigest = sha256Digest(tombstoneManifest);

/** Returns the prefix that every history tag of `tag` starts with. */
export function historyTagStem(tag: string): string {
  const hash = createHash("sha256").update(tag).digest("hex").slice(0, tagHashLength);
  return `${historyTagPrefix}${hash}-`;
}

/** Returns the reserved tag an entry is stored under; at most 54 characters for a 24-hex id. */
export function historyTag(tag: string, entry: LogEntry): string {
  const time = Date.parse(entry.at).toString(36).padStart(timeDigits, "0");
  return `${historyTagStem(tag)}${time}-${entry.id}`;
}

/** Returns the history tags of `tag` among a repository's tags, oldest first. */
export function historyTagsOf(repositoryTags: readonly string[], tag: string): string[] {
  const stem = historyTagStem(tag);
  return repositoryTags.filter((candidate) => candidate.startsWith(stem)).sort();
}

export function historyManifest(tag: string, entry: LogEntry): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: historyArtifactType,
      config: emptyDescriptor,
      layers: [emptyDescriptor],
      annotations: { [Annotation.tag]: tag, [Annotation.entry]: JSON.stringify(entry) },
    }),
  );
}

/**
 * Reads the entry from a history manifest. Returns undefined for a manifest of another tag
 * (two tags whose hashes share 16 hex digits) or one that is not a whole entry.
 */
export function parseHistoryManifest(bytes: Uint8Array, tag: string): LogEntry | undefined {
  let manifest: { annotations?: Record<string, unknown> };
  try {
    manifest = JSON.parse(Buffer.from(bytes).toString("utf8")) as typeof manifest;
  } catch {
    return undefined;
  }
  const annotations = manifest.annotations ?? {};
  const text = annotations[Annotation.entry];
  if (annotations[Annotation.tag] !== tag || typeof text !== "string") return undefined;
  return parseLog(text.replaceAll("\n", " "))[0];
}
