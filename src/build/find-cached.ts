import { getEngineJson, localDaemonSocket } from "../docker/engine.js";
import { reservedTagPrefix, type RegistryLocation } from "../names.js";
import type { RegistryClient } from "../registry/client.js";

/** Label on every built image, holding the definition hash. */
export const definitionLabel = "dev.modal-image.definition";

/** Returns the reserved tag an image is pushed under: `_def-<hex>` of its definition hash. */
export function definitionTag(definitionHash: string): string {
  return `${reservedTagPrefix}def-${definitionHash.slice("sha256:".length)}`;
}

/** An image built earlier from the same definition hash. */
export type CachedImage =
  | { location: "registry"; digest: string; imageId: string }
  | { location: "local"; imageId: string };

export interface FindCachedOptions {
  definitionHash: string;
  /** Repository with its registry host, such as `127.0.0.1:5000/team/app`. */
  repository: string;
  registry: RegistryLocation | undefined;
  /** Client for `registry`, shared by every image of one run. */
  client: RegistryClient | undefined;
}

/**
 * Looks for an image of this definition hash: first in the registry, as the manifest of
 * `REPOSITORY:_def-<hex>`, then in the local daemon, by the definition label. Returns undefined
 * when neither has one. A registry error other than a 404 is thrown, as a push would throw it.
 */
export async function findCachedImage(
  options: FindCachedOptions,
): Promise<CachedImage | undefined> {
  const { registry, client, repository, definitionHash } = options;
  if (registry !== undefined && client !== undefined) {
    const path = repository.slice(registry.host.length + 1);
    const head = await client.headManifest(path, definitionTag(definitionHash));
    if (head !== undefined) {
      const imageId = await readConfigDigest(client, path, head.digest);
      return { location: "registry", digest: head.digest, imageId: imageId ?? head.digest };
    }
  }
  const local = await findNewestImageByLabel(definitionLabel, definitionHash);
  return local === undefined ? undefined : { location: "local", imageId: local.Id };
}

/**
 * Returns the most recently created local image whose label `key` has `value`, or undefined
 * when the daemon has none. A daemon on a local socket is queried without loading dockerode.
 */
async function findNewestImageByLabel(
  key: string,
  value: string,
): Promise<{ Id: string; Created: number } | undefined> {
  const socket = localDaemonSocket();
  let images: Array<{ Id: string; Created: number }>;
  if (socket === undefined) {
    const { listImagesByLabel } = await import("../docker/client.js");
    images = await listImagesByLabel(key, value);
  } else {
    const filters = encodeURIComponent(JSON.stringify({ label: [`${key}=${value}`] }));
    const answer = await getEngineJson(
      socket,
      `/images/json?filters=${filters}`,
      `list of images with label ${key}=${value}`,
    );
    images = Array.isArray(answer) ? answer.filter(isImageSummary) : [];
  }
  return images.reduce<{ Id: string; Created: number } | undefined>(
    (newest, image) => (newest === undefined || image.Created > newest.Created ? image : newest),
    undefined,
  );
}

function isImageSummary(value: unknown): value is { Id: string; Created: number } {
  const record = value as { Id?: unknown; Created?: unknown } | null;
  return typeof record?.Id === "string" && typeof record.Created === "number";
}

/**
 * Returns the config digest of an image manifest, which is the image ID the daemon gives the
 * image once it is pulled. Returns undefined for an index, which has no single config.
 */
async function readConfigDigest(
  client: RegistryClient,
  path: string,
  digest: string,
): Promise<string | undefined> {
  const manifest = await client.getManifest(path, digest);
  if (manifest === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifest.bytes.toString("utf8"));
  } catch {
    return undefined;
  }
  const config = (parsed as { config?: { digest?: unknown } } | null)?.config;
  return typeof config?.digest === "string" ? config.digest : undefined;
}
