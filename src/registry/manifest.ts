import { createHash } from "node:crypto";

/** Manifest media types this tool reads and copies. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  /** The OCI 1.1 empty descriptor: a config or layer whose blob is the two bytes `{}`. */
  ociEmpty: "application/vnd.oci.empty.v1+json",
} as const;

/** Accept header for manifest requests, so the registry returns each manifest unconverted. */
export const manifestAccept = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
].join(", ");

const indexTypes = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const imageTypes = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);

// Layers stored outside the registry (Windows base layers): a registry never has their blobs.
const foreignLayerTypes = new Set([
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
]);

/** A content descriptor from the OCI image spec. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
}

/** The content a manifest refers to: child manifests of an index, or blobs of an image. */
export interface ManifestReferences {
  manifests: Descriptor[];
  blobs: Descriptor[];
}

/** Returns `sha256:<hex>` of the exact bytes. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

export function isIndexMediaType(mediaType: string): boolean {
  return indexTypes.has(mediaType);
}

export function isSupportedMediaType(mediaType: string): boolean {
  return indexTypes.has(mediaType) || imageTypes.has(mediaType);
}

/** Strips parameters such as `; charset=utf-8` from a Content-Type value. */
export function baseMediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/**
 * Returns a manifest's media type: the Content-Type the registry sent, or the body's own
 * `mediaType` field when the header is missing or generic.
 */
export function manifestMediaType(contentType: string | null, bytes: Uint8Array): string {
  const header = baseMediaType(contentType);
  if (isSupportedMediaType(header)) return header;
  const field = parseJson(bytes)?.mediaType;
  return typeof field === "string" ? field : header;
}

/** Lists what a manifest refers to. Blobs of foreign layers are left out, since no registry has them. */
export function manifestReferences(bytes: Uint8Array, mediaType: string): ManifestReferences {
  const body = parseJson(bytes) ?? {};
  if (isIndexMediaType(mediaType)) {
    return { manifests: descriptors(body.manifests), blobs: [] };
  }
  const blobs = [...descriptors([body.config]), ...descriptors(body.layers)];
  return {
    manifests: [],
    blobs: blobs.filter((blob) => !foreignLayerTypes.has(blob.mediaType)),
  };
}

function descriptors(value: unknown): Descriptor[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (item): item is Descriptor =>
      typeof item === "object" &&
      item !== null &&
      typeof (item as Descriptor).digest === "string" &&
      typeof (item as Descriptor).mediaType === "string",
  );
}

function parseJson(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(bytes).toString("utf8"));
    return typeof value === "object" && value !== null
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
