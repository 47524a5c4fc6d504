import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { collectContext, type ContextEntry, type ContextSource } from "../context/collect.js";
import { hashContext } from "../context/hash.js";
import { checkLocalPath } from "../context/local-path.js";
import { FileDigestCache } from "../context/hash-cache.js";
import {
  contextDir,
  generateDockerfile,
  generatorVersion,
  secretFingerprintPath,
} from "../dockerfile/generate.js";
import { UsageError } from "../errors.js";
import type { Image } from "../image/image.js";
import type { NameIndex } from "../index-store/types.js";
import { parseNameRef } from "../names.js";
import {
  readSecretValues,
  secretFingerprint,
  secretMountsOf,
  type SecretValue,
} from "./secrets.js";
import { compareStrings } from "../util/compare.js";

/** An image definition made ready to build: Dockerfile text, context entries and hash. */
export interface PreparedImage {
  key: string;
  dockerfile: string;
  entries: ContextEntry[];
  /**
   * `sha256:<hex>` over the generator version, the Dockerfile and the context hash. Local paths
   * enter only through the context's archive paths, so the project may move.
   * NOTE: a base named by tag (`fromRegistry("busybox:latest")`, or a FROM line in a user's
   * Dockerfile) enters as that text, so a moved upstream tag does not change the hash, and
   * `build` reuses the older image until `--force`.
   */
  definitionHash: string;
  /** The pinned reference of a `fromName` base. */
  baseReference: string | undefined;
  /**
   * Values of the secrets the definition's commands use, by ID; empty when they use none. The
   * definition hash covers a salted scrypt fingerprint of each, never the value itself.
   */
  secrets: ReadonlyMap<string, SecretValue>;
  /**
   * Files that go into the context beside the Dockerfile: for each step with secrets, their
   * fingerprints, which make BuildKit run the step again when a value changes.
   */
  extraFiles: Array<{ archivePath: string; content: string }>;
}

export interface PrepareOptions {
  /** Directory that relative local paths resolve against: the config file's directory. */
  baseDir: string;
  index: NameIndex;
  /** `$MODAL_IMAGE_HOME`, whose `cache/` keeps file digests between runs. @default no cache */
  cacheHome?: string;
  /** Environment that `Secret.fromEnv` values are read from. @default process.env */
  env?: NodeJS.ProcessEnv;
}

async function readBaseDockerfile(image: Image, baseDir: string) {
  if (image.base.kind !== "fromDockerfile") return undefined;
  const file = path.resolve(baseDir, image.base.path);
  await checkLocalPath(baseDir, file);
  const text = await fs.readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    const reason =
      error.code === "ENOENT"
        ? "not found"
        : error.code === "EISDIR"
          ? "is a directory"
          : error.message;
    throw new UsageError(`Dockerfile ${file}: ${reason}`, {
      hint: "check the path given to Image.fromDockerfile; relative paths start at the config file's directory",
    });
  });
  const contextPath = path.resolve(baseDir, image.base.contextDir ?? path.dirname(file));
  return { text, contextPath };
}

/** A definition's Dockerfile text and the local sources its context needs. */
export interface GeneratedImage {
  dockerfile: string;
  sources: ContextSource[];
  baseReference: string | undefined;
}

/** Resolves the base and generates the Dockerfile. Reads local files but contacts no daemon. */
export async function generateImage(
  image: Image,
  options: PrepareOptions,
): Promise<GeneratedImage> {
  let baseReference: string | undefined;
  if (image.base.kind === "fromName") {
    baseReference = (await options.index.resolve(parseNameRef(image.base.name))).reference;
  }
  const baseDockerfile = await readBaseDockerfile(image, options.baseDir);
  const generated = generateDockerfile({
    image,
    ...(baseReference === undefined ? {} : { baseReference }),
    ...(baseDockerfile === undefined ? {} : { baseDockerfileText: baseDockerfile.text }),
    resolveLocalPath: (localPath) => path.resolve(options.baseDir, localPath),
  });
  const sources: ContextSource[] = [...generated.sources];
  if (baseDockerfile) {
    // The Dockerfile's own context sits at the root of the tar, where its COPY lines expect it.
    // Files this tool adds live under .modal-image/, so a directory of that name is left out.
    // NOTE: a `COPY . <dir>` in that Dockerfile also copies .modal-image/, which `docker build`
    // would not.
    sources.unshift({
      prefix: "",
      localPath: baseDockerfile.contextPath,
      kind: "dir",
      ignore: [`/${contextDir}`],
    });
  }
  for (const source of sources) await checkLocalPath(options.baseDir, source.localPath);
  return { dockerfile: generated.text, sources, baseReference };
}

/** Generates the Dockerfile, collects the context and hashes both. Contacts no daemon. */
export async function prepareImage(
  key: string,
  image: Image,
  options: PrepareOptions,
): Promise<PreparedImage> {
  const generated = await generateImage(image, options);
  // Secrets are read first, so that a missing one is reported before any file is hashed.
  const secrets = await readSecretValues(secretMountsOf(image), {
    baseDir: options.baseDir,
    env: options.env ?? process.env,
  });
  const entries = await collectContext(generated.sources);
  let contextHash: string;
  if (options.cacheHome === undefined) {
    contextHash = await hashContext(entries);
  } else {
    const cache = await FileDigestCache.open(options.cacheHome, generated.sources);
    contextHash = await hashContext(entries, cache.digest);
    await cache.save();
  }
  const byId = new Map<string, string>();
  for (const [id, value] of secrets) byId.set(id, await secretFingerprint(id, value));
  const fingerprints = [...byId].sort(([a], [b]) => compareStrings(a, b));
  const extraFiles: PreparedImage["extraFiles"] = [];
  image.steps.forEach((step, index) => {
    if (step.kind !== "runCommands" || !step.options.secrets?.length) return;
    const lines = secretMountsOf({ steps: [step] }).map(
      (mount) => `${mount.id} ${byId.get(mount.id)!}\n`,
    );
    extraFiles.push({ archivePath: secretFingerprintPath(index), content: lines.join("") });
  });
  // A definition without secrets hashes as it did before secrets existed.
  const hashed = {
    generatorVersion,
    dockerfile: generated.dockerfile,
    context: contextHash,
    ...(fingerprints.length > 0 ? { secrets: fingerprints } : {}),
  };
  const definitionHash = `sha256:${createHash("sha256").update(JSON.stringify(hashed)).digest("hex")}`;
  return {
    key,
    dockerfile: generated.dockerfile,
    entries,
    definitionHash,
    baseReference: generated.baseReference,
    secrets,
    extraFiles,
  };
}
