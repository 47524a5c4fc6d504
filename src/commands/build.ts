import { prepareImage, type PreparedImage } from "../build/prepare.js";
import type { RegistryAuth } from "../docker/client.js";
import { dockerfilePath } from "../dockerfile/generate.js";
import { UsageError } from "../errors.js";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import type { Image } from "../image/image.js";
import { parseExpected } from "../index-store/local.js";
import {
  reservedTagPrefix,
  formatNameRef,
  parseNameRef,
  parseRegistry,
  repositoryFor,
  type NameRef,
  type RegistryLocation,
} from "../names.js";
import { chooseRegistryText, openIndex, type CommandOptions } from "./options.js";

export interface BuildOptions extends CommandOptions {
  /** Keys of the definitions to build. @default every definition, or those --publish names */
  images?: readonly string[];
  /** `NAME[:TAG]` values to point at the built image once build and push succeeded. */
  publish?: readonly string[];
  /** The digest each published tag must have before it moves, or `none`. */
  expect?: string;
  /** Build without the daemon's layer cache. */
  noCache?: boolean;
}

export interface BuiltImage {
  /** The definition's key in the config. */
  image: string;
  imageId: string;
  /** The pinned reference: `REPOSITORY@sha256:...`, or the image ID without a registry. */
  reference: string;
  /** The registry's manifest digest, or the image ID without a registry. */
  digest: string;
  repository: string | undefined;
  definitionHash: string;
  /** The `NAME:TAG` values now pointing at this image. */
  published: string[];
}

export interface BuildResult {
  images: BuiltImage[];
}

/** Label on every built image, holding the definition hash. */
export const definitionLabel = "dev.modal-image.definition";

function chooseRegistry(options: BuildOptions, config: LoadedConfig): RegistryLocation | undefined {
  const chosen = chooseRegistryText(options, config);
  return chosen === undefined ? undefined : parseRegistry(chosen.value, chosen.source);
}

/** Works out which definitions to build and which names each one publishes. */
function plan(
  config: LoadedConfig,
  requested: readonly string[],
  publish: readonly NameRef[],
): Array<{ key: string; image: Image; publish: NameRef[] }> {
  const available = [...config.images.keys()];
  const unknown = (key: string) =>
    new UsageError(`no image ${JSON.stringify(key)} in ${config.filepath}`, {
      hint: `defined images: ${available.join(", ")}`,
    });
  for (const key of requested) if (!config.images.has(key)) throw unknown(key);
  const targets = new Map<string, NameRef[]>();
  for (const key of requested) targets.set(key, []);
  for (const ref of publish) {
    let key: string | undefined = config.images.has(ref.name) ? ref.name : undefined;
    if (!key && available.length === 1) key = available[0];
    if (!key && requested.length === 1) key = requested[0];
    if (!key) {
      throw new UsageError(`--publish ${formatNameRef(ref)} matches no image definition`, {
        hint: `use one of ${available.join(", ")} as NAME, or name the image to build: modal-image build IMAGE --publish ${formatNameRef(ref)}`,
      });
    }
    if (requested.length > 0 && !targets.has(key)) {
      throw new UsageError(
        `--publish ${formatNameRef(ref)} names ${key}, which is not being built`,
        {
          hint: `add ${key} to the images to build: modal-image build ${[...requested, key].join(" ")} --publish ${formatNameRef(ref)}`,
        },
      );
    }
    targets.set(key, [...(targets.get(key) ?? []), ref]);
  }
  if (targets.size === 0) for (const key of available) targets.set(key, []);
  return [...targets].map(([key, refs]) => ({
    key,
    image: config.images.get(key)!,
    publish: refs,
  }));
}

/**
 * Builds image definitions through the Docker daemon, pushes them when a registry is set, and
 * then points the requested names at them. Every check on the input runs before the daemon is
 * contacted; a failed build or push changes no name.
 */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const publishRefs = (options.publish ?? []).map(parseNameRef);
  const expect = parseExpected(options.expect);
  // One expected value cannot describe several tags, and a second failure would leave the first moved.
  if (expect !== undefined && publishRefs.length !== 1) {
    throw new UsageError("--expect needs exactly one --publish", {
      hint: "name the tag to move: modal-image build --publish NAME[:TAG] --expect DIGEST",
    });
  }
  const config = await loadConfig(options);
  const registry = chooseRegistry(options, config);
  const targets = plan(config, options.images ?? [], publishRefs);
  const index = await openIndex(options, config);

  const prepared: Array<{ prepared: PreparedImage; publish: NameRef[]; repository: string }> = [];
  for (const target of targets) {
    const repository = registry ? repositoryFor(registry, target.key) : target.key;
    const ready = await prepareImage(target.key, target.image, { baseDir: config.dir, index });
    prepared.push({ prepared: ready, publish: target.publish, repository });
  }

  // Loaded here so that commands which never build do not pay for dockerode.
  const { resolveRegistryAuth } = await import("../docker/auth.js");
  const auth = registry ? await resolveRegistryAuth(registry.host, options.env) : undefined;
  const results: BuiltImage[] = [];
  for (const { prepared: image, repository } of prepared) {
    try {
      results.push(await buildAndPush(image, repository, registry !== undefined, auth, options));
    } catch (error) {
      // With several images, the message must say which one failed.
      if (error instanceof Error && prepared.length > 1) {
        error.message = `image ${image.key}: ${error.message}`;
      }
      throw error;
    }
  }
  // Names move only after every image was built and pushed.
  for (const [position, { publish }] of prepared.entries()) {
    const built = results[position]!;
    for (const ref of publish) {
      options.onProgress?.({
        type: "phase",
        image: built.image,
        phase: "publish",
        detail: formatNameRef(ref),
      });
      const value = { reference: built.reference, digest: built.digest, image: built.image };
      const record = await index.publish(ref, { ...value, action: "build" }, expect);
      built.published.push(formatNameRef(record));
    }
    options.onProgress?.({ type: "done", image: built.image, reference: built.reference });
  }
  return { images: results };
}

async function buildAndPush(
  image: PreparedImage,
  repository: string,
  push: boolean,
  auth: RegistryAuth | undefined,
  options: BuildOptions,
): Promise<BuiltImage> {
  const { buildImage, pushImage } = await import("../docker/client.js");
  const { packContext } = await import("../context/tar.js");
  const tag = `${reservedTagPrefix}def-${image.definitionHash.slice("sha256:".length)}`;
  const report = options.onProgress;
  report?.({ type: "phase", image: image.key, phase: "build" });
  const context = packContext(image.entries, [
    { archivePath: dockerfilePath, content: image.dockerfile },
  ]);
  const { imageId } = await buildImage({
    context,
    dockerfile: dockerfilePath,
    tags: [`${repository}:${tag}`],
    labels: { [definitionLabel]: image.definitionHash },
    ...(options.noCache ? { noCache: true } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onEvent: (event) => report?.({ type: "build", image: image.key, event }),
  });
  let reference = imageId;
  let digest = imageId;
  if (push) {
    report?.({ type: "phase", image: image.key, phase: "push", detail: repository });
    const pushed = await pushImage({
      repository,
      tag,
      ...(auth ? { auth } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => report?.({ type: "push", image: image.key, event }),
    });
    digest = pushed.digest;
    reference = `${repository}@${pushed.digest}`;
  }
  return {
    image: image.key,
    imageId,
    reference,
    digest,
    repository: push ? repository : undefined,
    definitionHash: image.definitionHash,
    published: [],
  };
}
