import fs from "node:fs/promises";
import path from "node:path";
import type { LoadedConfig } from "../config/load.js";
import { readDaemonInfo, dockerHost, type DaemonInfo } from "../docker/daemon-info.js";
import { debianSlimImage, uvImage } from "../dockerfile/generate.js";
import { OperationError } from "../errors.js";
import type { Image } from "../image/image.js";
import { checkTimeoutMs, failedCheck, type DoctorCheck } from "./check.js";

/**
 * Returns whether the daemon can run BuildKit builds and whether it is the default.
 * NOTE: availability is inferred: Docker Engine 18.09 (API 1.39) added BuildKit, on Linux only.
 */
function describeBuildKit(info: DaemonInfo): { buildKit: string; text: string } {
  if (info.builderVersion === "2")
    return { buildKit: "default", text: "BuildKit is the default builder" };
  const [major = 0, minor = 0] = info.apiVersion.split(".").map(Number);
  const supported = info.os === "linux" && (major > 1 || (major === 1 && minor >= 39));
  if (!supported)
    return {
      buildKit: "unavailable",
      text: "BuildKit is unavailable (it needs a Linux daemon with API 1.39 or later)",
    };
  const builder =
    info.builderVersion === "1"
      ? "the classic builder is the default"
      : "the daemon names no default builder";
  return { buildKit: "available", text: `BuildKit is available; ${builder}` };
}

/** Pings the daemon at DOCKER_HOST and reports its version, API version and default builder. */
export async function checkDaemon(): Promise<{ check: DoctorCheck; info: DaemonInfo | undefined }> {
  const host = dockerHost();
  try {
    const info = await readDaemonInfo(checkTimeoutMs);
    const buildKit = describeBuildKit(info);
    const check: DoctorCheck = {
      check: "daemon",
      status: "ok",
      finding: `${host}: Docker ${info.version}, API ${info.apiVersion}, ${info.os}/${info.arch}; ${buildKit.text}`,
      details: { dockerHost: host, ...info, buildKit: buildKit.buildKit },
    };
    return { check, info };
  } catch (error) {
    const fix = "start the Docker daemon, or set DOCKER_HOST to a running one";
    return { check: failedCheck("daemon", error, fix, { dockerHost: host }), info: undefined };
  }
}

/**
 * Returns the image references in the FROM lines of a Dockerfile, leaving out earlier stages
 * and `scratch`.
 * NOTE: a reference that uses an ARG (`FROM ${BASE}`) is left out, because its value is known
 * only at build time.
 */
export function dockerfileBaseImages(text: string): string[] {
  const stages = new Set<string>(["scratch"]);
  const images: string[] = [];
  const fromRe = /^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i;
  for (const line of text.split(/\r?\n/)) {
    const match = fromRe.exec(line);
    if (!match?.[1]) continue;
    const reference = match[1];
    if (!stages.has(reference.toLowerCase()) && !reference.includes("$")) images.push(reference);
    if (match[2]) stages.add(match[2].toLowerCase());
  }
  return images;
}

/** Returns the images a definition's build pulls when the daemon lacks them. */
async function baseImagesOf(image: Image, baseDir: string): Promise<string[]> {
  const images: string[] = [];
  const base = image.base;
  if (base.kind === "debianSlim") images.push(debianSlimImage(base.pythonVersion));
  if (base.kind === "fromRegistry") images.push(base.reference);
  if (base.kind === "fromDockerfile") {
    const text = await fs.readFile(path.resolve(baseDir, base.path), "utf8").catch(() => "");
    images.push(...dockerfileBaseImages(text));
  }
  for (const step of image.steps) {
    if (step.kind === "uvPipInstall") images.push(uvImage(step.options.uvVersion));
  }
  return images;
}

/** Rejects when `promise` takes longer than the check time limit. */
async function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new OperationError(`${what} timed out after ${checkTimeoutMs / 1000} s`)),
      checkTimeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Checks which base images of the config's definitions the daemon lacks. A missing one is a
 * warning: the build pulls it, which fails where its registry is out of reach.
 */
export async function checkBaseImages(
  config: LoadedConfig | undefined,
  daemon: DaemonInfo | undefined,
): Promise<DoctorCheck> {
  if (!config) {
    return {
      check: "base-images",
      status: "skip",
      finding: "no valid config to read base images from",
    };
  }
  if (!daemon) {
    return { check: "base-images", status: "skip", finding: "the Docker daemon is not reachable" };
  }
  const references = new Set<string>();
  for (const image of config.images.values()) {
    for (const reference of await baseImagesOf(image, config.dir)) references.add(reference);
  }
  if (references.size === 0) {
    return { check: "base-images", status: "ok", finding: "the definitions pull no base images" };
  }

  const { inspectImage } = await import("../docker/client.js");
  const missing: string[] = [];
  try {
    for (const reference of references) {
      const found = await withTimeout(inspectImage(reference), `inspect of image ${reference}`);
      if (!found) missing.push(reference);
    }
  } catch (error) {
    return failedCheck("base-images", error, "check the Docker daemon, then run doctor again");
  }
  const details = { images: [...references], missing };
  if (missing.length === 0) {
    return {
      check: "base-images",
      status: "ok",
      finding: `all ${references.size} base images are in the local daemon: ${[...references].join(", ")}`,
      details,
    };
  }
  return {
    check: "base-images",
    status: "warn",
    finding: `${missing.length} of ${references.size} base images are not in the local daemon: ${missing.join(", ")}`,
    fix: `the build pulls them, so the daemon must reach their registries; to pull now: ${missing.map((reference) => `docker pull ${reference}`).join("; ")}`,
    details,
  };
}
