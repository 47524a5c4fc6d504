import { definitionLabel, definitionTag, findCachedImage } from "../build/find-cached.js";
import { prepareImage, type PreparedImage } from "../build/prepare.js";
import type { BuildImageOptions, RegistryAuth } from "../docker/client.js";
import { checkDockerHost } from "../docker/host.js";
import { dockerfilePath } from "../dockerfile/generate.js";
import { throwIfAborted, UsageError } from "../errors.js";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import type { Image } from "../image/image.js";
import { parseExpected } from "../index-store/local.js";
import {
  formatNameRef,
  parseNameRef,
  parseRegistry,
  repositoryFor,
  type NameRef,
  type RegistryLocation,
} from "../names.js";
import { modalImageHome } from "../home.js";
import type { RegistryClient } from "../registry/client.js";
import { mapWithConcurrency } from "../util/concurrency.js";
import { chooseRegistryText } from "./index-choice.js";
import { openIndex, type CommandOptions } from "./options.js";

export interface BuildOptions extends CommandOptions {
  /** Keys of the definitions to build. @default every definition, or those --publish names */
  images?: readonly string[];
  /** `NAME[:TAG]` values to point at the built image once build and push succeeded. */
  publish?: readonly string[];
  /** The digest each published tag must have before it moves, or `none`. */
  expect?: string;
  /**
   * Build without the daemon's layer cache. It implies `force`, since reusing an image of the
   * same definition would skip the build this option requests.
   */
  noCache?: boolean;
  /** Build even when an image of the same definition hash exists locally or in the registry. */
  force?: boolean;
  /**
   * Maximum number of definitions built at once: a whole number of at least 1, or its decimal
   * digits as given on the command line. @default 2
   */
  parallel?: number | string;
}

export interface BuiltImage {
  /** The definition's key in the config. */
  image: string;
  /** The local image ID; for an image found only in the registry, its manifest's config digest. */
  imageId: string;
  /** The pinned reference: `REPOSITORY@sha256:...`, or the image ID without a registry. */
  reference: string;
  /** The registry's manifest digest, or the image ID without a registry. */
  digest: string;
  repository: string | undefined;
  definitionHash: string;
  /** The `NAME:TAG` values now pointing at this image. */
  published: string[];
  /** Whether an image of the same definition hash was reused instead of built. */
  cached: boolean;
}

export interface BuildResult {
  images: BuiltImage[];
}

export { definitionLabel };

function checkParallel(value: number | string | undefined): number {
  if (value === undefined) return 2;
  // Number() would also take "", " 2", "0x2" and "1e0", so text must be plain digits.
  const parsed = typeof value === "string" && /^[0-9]+$/.test(value) ? Number(value) : value;
  if (typeof parsed === "number" && Number.isSafeInteger(parsed) && parsed >= 1) return parsed;
  const quoted = typeof value === "string" ? JSON.stringify(value) : String(value);
  throw new UsageError(`invalid --parallel value ${quoted}`, {
    hint: "give the maximum number of images to build at once, a whole number of at least 1",
  });
}

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
  checkDockerHost();
  const publishRefs = (options.publish ?? []).map(parseNameRef);
  const expect = parseExpected(options.expect);
  // One expected value cannot describe several tags, and a second failure would leave the first moved.
  if (expect !== undefined && publishRefs.length !== 1) {
    throw new UsageError("--expect needs exactly one --publish", {
      hint: "name the tag to move: modal-image build --publish NAME[:TAG] --expect DIGEST",
    });
  }
  const parallel = checkParallel(options.parallel);
  const config = await loadConfig(options);
  const registry = chooseRegistry(options, config);
  const targets = plan(config, options.images ?? [], publishRefs);
  const index = await openIndex(options, config);

  const prepared: Array<{ prepared: PreparedImage; publish: NameRef[]; repository: string }> = [];
  for (const target of targets) {
    const repository = registry ? repositoryFor(registry, target.key) : target.key;
    const ready = await prepareImage(target.key, target.image, {
      baseDir: config.dir,
      index,
      cacheHome: modalImageHome(options.env),
      ...(options.env ? { env: options.env } : {}),
    });
    prepared.push({ prepared: ready, publish: target.publish, repository });
  }

  // Loaded only with a registry, so that local builds, commands which never build, and configs
  // that import the library load neither the credential code nor the registry client.
  let auth: RegistryAuth | undefined;
  let client: RegistryClient | undefined;
  if (registry) {
    const { resolveRegistryAuth } = await import("../docker/auth.js");
    const { RegistryClient } = await import("../registry/client.js");
    auth = await resolveRegistryAuth(registry.host, options.env);
    client = new RegistryClient(registry.host, {
      env: options.env ?? process.env,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    // A registry that is down, fails or rejects the credentials is reported before anything is
    // built. Otherwise the daemon finds out at push time, and Engine 20.10 retries a failing
    // layer upload 5 times, which took about 50 s against a registry returning HTTP 500.
    await client.checkApi();
  }
  // The first failure stops the builds still running, so that the error is reported at once.
  const stopOthers = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, stopOthers.signal])
    : stopOthers.signal;
  const run: RunContext = { registry, client, auth, options: { ...options, signal } };
  const results = await mapWithConcurrency(
    prepared,
    parallel,
    async ({ prepared: image, repository }) => {
      try {
        return await buildOrReuse(image, repository, run);
      } catch (error) {
        stopOthers.abort();
        // With several images, the message names the one that failed.
        if (error instanceof Error && prepared.length > 1) {
          error.message = `image ${image.key}: ${error.message}`;
        }
        throw error;
      }
    },
  );
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

/** The settings and clients shared by every image of one build run. */
interface RunContext {
  registry: RegistryLocation | undefined;
  client: RegistryClient | undefined;
  auth: RegistryAuth | undefined;
  options: BuildOptions;
}

/**
 * Returns an image built earlier from the same definition hash, tagging and pushing a local one
 * when the registry lacks it, or else builds and pushes the image.
 */
async function buildOrReuse(
  image: PreparedImage,
  repository: string,
  run: RunContext,
): Promise<BuiltImage> {
  const { options, registry } = run;
  throwIfAborted(options.signal, `build of ${image.key}`);
  const cached =
    options.force || options.noCache
      ? undefined
      : await findCachedImage({
          definitionHash: image.definitionHash,
          repository,
          registry,
          client: run.client,
        });
  if (cached?.location === "registry") {
    const tag = definitionTag(image.definitionHash);
    options.onProgress?.({
      type: "phase",
      image: image.key,
      phase: "cached",
      detail: `${repository}:${tag}`,
    });
    return {
      ...describe(image, cached.imageId, `${repository}@${cached.digest}`, cached.digest),
      repository,
      cached: true,
    };
  }
  if (cached?.location === "local") {
    options.onProgress?.({
      type: "phase",
      image: image.key,
      phase: "cached",
      detail: cached.imageId,
    });
    if (registry === undefined) {
      return { ...describe(image, cached.imageId, cached.imageId, cached.imageId), cached: true };
    }
    const { tagImage } = await import("../docker/client.js");
    await tagImage(cached.imageId, repository, definitionTag(image.definitionHash));
    return { ...(await push(image, cached.imageId, repository, run)), cached: true };
  }
  const imageId = await buildDefinition(image, repository, options);
  if (registry === undefined) {
    return { ...describe(image, imageId, imageId, imageId), cached: false };
  }
  return { ...(await push(image, imageId, repository, run)), cached: false };
}

/** Builds the image, tagged `REPOSITORY:_def-<hex>` and labelled, and returns its ID. */
async function buildDefinition(
  image: PreparedImage,
  repository: string,
  options: BuildOptions,
): Promise<string> {
  const { buildImage } = await import("../docker/client.js");
  const { packContext } = await import("../context/tar.js");
  const report = options.onProgress;
  report?.({ type: "phase", image: image.key, phase: "build" });
  const context = packContext(image.entries, [
    { archivePath: dockerfilePath, content: image.dockerfile },
    ...image.extraFiles,
  ]);
  // Only BuildKit can mount a secret, so every other definition keeps the classic builder.
  const build = image.secrets.size > 0 ? await secretBuilder(image) : buildImage;
  const { imageId } = await build({
    context,
    dockerfile: dockerfilePath,
    tags: [`${repository}:${definitionTag(image.definitionHash)}`],
    labels: { [definitionLabel]: image.definitionHash },
    ...(options.noCache ? { noCache: true } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onEvent: (event) => report?.({ type: "build", image: image.key, event }),
  });
  return imageId;
}

/** Returns a build function that serves the definition's secrets through a BuildKit session. */
async function secretBuilder(image: PreparedImage) {
  const { buildImageWithSecrets } = await import("../docker/buildkit.js");
  const { secretRedactor } = await import("../build/secrets.js");
  const values = new Map([...image.secrets].map(([id, value]) => [id, value.reveal()]));
  const redact = secretRedactor(image.secrets.values());
  return (options: BuildImageOptions) =>
    buildImageWithSecrets({ ...options, secrets: values, redact, sessionName: image.key });
}

/** Pushes `REPOSITORY:_def-<hex>`, which must exist locally, and describes the pushed image. */
async function push(
  image: PreparedImage,
  imageId: string,
  repository: string,
  run: RunContext,
): Promise<Omit<BuiltImage, "cached">> {
  const { pushImage } = await import("../docker/client.js");
  const { options, auth } = run;
  const report = options.onProgress;
  report?.({ type: "phase", image: image.key, phase: "push", detail: repository });
  const pushed = await pushImage({
    repository,
    tag: definitionTag(image.definitionHash),
    ...(auth ? { auth } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    onEvent: (event) => report?.({ type: "push", image: image.key, event }),
  });
  return {
    ...describe(image, imageId, `${repository}@${pushed.digest}`, pushed.digest),
    repository,
  };
}

function describe(
  image: PreparedImage,
  imageId: string,
  reference: string,
  digest: string,
): Omit<BuiltImage, "cached"> {
  return {
    image: image.key,
    imageId,
    reference,
    digest,
    repository: undefined,
    definitionHash: image.definitionHash,
    published: [],
  };
}
