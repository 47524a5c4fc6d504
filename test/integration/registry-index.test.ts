import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictError, NotFoundError, OperationError, UsageError } from "../../src/errors.js";
import { RegistryIndex } from "../../src/index-store/registry.js";
import { tombstoneDigest } from "../../src/index-store/registry-history.js";
import type { NewTagValue } from "../../src/index-store/types.js";
import { parseRegistry } from "../../src/names.js";
import { skipIntegration, uniqueName } from "../helpers/cli.js";
import { docker } from "../helpers/docker.js";
import { listTags, manifestDigest } from "../helpers/registry.js";
import {
  authRegistry,
  openRegistry,
  readAuthRegistryCredentials,
  type RegistryCredentials,
} from "../helpers/stack.js";

const manifestAccept = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

function authorization(credentials?: RegistryCredentials): Record<string, string> {
  if (!credentials) return {};
  const token = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
  return { authorization: `Basic ${token}` };
}

/** Reads a manifest's exact bytes from a registry, bypassing the code under test. */
async function manifestBytes(
  registry: string,
  repository: string,
  reference: string,
  credentials?: RegistryCredentials,
): Promise<Buffer> {
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: manifestAccept, ...authorization(credentials) },
  });
  if (!response.ok) throw new Error(`GET ${repository}:${reference}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

async function putManifest(
  repository: string,
  reference: string,
  bytes: Buffer,
  mediaType: string,
): Promise<void> {
  const response = await fetch(`http://${openRegistry}/v2/${repository}/manifests/${reference}`, {
    method: "PUT",
    headers: { "content-type": mediaType },
    body: bytes,
  });
  if (response.status !== 201)
    throw new Error(`PUT ${repository}:${reference}: ${response.status}`);
}

async function blobExists(repository: string, digest: string): Promise<boolean> {
  const response = await fetch(`http://${openRegistry}/v2/${repository}/blobs/${digest}`, {
    method: "HEAD",
  });
  return response.status === 200;
}

const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

describe.skipIf(skipIntegration)("RegistryIndex against distribution 2.8", () => {
  // Every name lives under this namespace, so parallel runs never share a repository.
  const namespace = uniqueName("regidx");
  const sourceRepository = `${namespace}/src`;
  const sourceTag = `${openRegistry}/${sourceRepository}:x`;
  const dirs: string[] = [];
  let envA: NodeJS.ProcessEnv;
  let envB: NodeJS.ProcessEnv;
  let indexA: RegistryIndex;
  let indexB: RegistryIndex;
  /** busybox as pushed by the daemon, and two OCI indexes that list it, each a distinct digest. */
  const digests: string[] = [];
  let imageManifest: Buffer;

  const pinned = (n: number): NewTagValue => ({
    reference: `${openRegistry}/${sourceRepository}@${digests[n]}`,
    digest: digests[n]!,
    action: "publish",
  });

  async function tempDir(label: string): Promise<string> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `modal-image-regidx-${label}-`));
    dirs.push(dir);
    return dir;
  }

  beforeAll(async () => {
    await docker(["tag", "busybox:latest", sourceTag]);
    await docker(["push", sourceTag]);
    const digest = await manifestDigest(openRegistry, sourceRepository, "x");
    if (!digest) throw new Error(`pushed ${sourceTag} but the registry has no digest for it`);
    imageManifest = await manifestBytes(openRegistry, sourceRepository, digest);
    digests.push(digest);
    for (const label of ["one", "two"]) {
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [
            {
              mediaType: "application/vnd.docker.distribution.manifest.v2+json",
              digest,
              size: imageManifest.length,
              platform: { architecture: "amd64", os: "linux" },
            },
          ],
          annotations: { "test.label": label },
        }),
      );
      await putManifest(
        sourceRepository,
        `index-${label}`,
        index,
        "application/vnd.oci.image.index.v1+json",
      );
      digests.push(sha256(index));
    }

    // Two index instances with their own MODAL_IMAGE_HOME act as two CI machines.
    envA = { ...process.env, MODAL_IMAGE_HOME: await tempDir("home-a") };
    envB = { ...process.env, MODAL_IMAGE_HOME: await tempDir("home-b") };
    const location = parseRegistry(`${openRegistry}/${namespace}`);
    indexA = new RegistryIndex(location, envA, { pageSize: 2 });
    indexB = new RegistryIndex(location, envB, { pageSize: 2 });
  });

  afterAll(async () => {
    await docker(["image", "rm", sourceTag]).catch(() => undefined);
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  });

  it("publishes within the source repository byte for byte", async () => {
    const record = await indexA.publish({ name: "src", tag: "v1" }, pinned(0));
    expect(record.reference).toBe(`${openRegistry}/${sourceRepository}@${digests[0]}`);
    expect(record.digest).toBe(digests[0]);
    const copied = await manifestBytes(openRegistry, sourceRepository, "v1");
    expect(copied.equals(imageManifest)).toBe(true);
  });

  it("mounts blobs into another repository", async () => {
    const record = await indexA.publish({ name: "app", tag: "latest" }, pinned(0));
    expect(record.reference).toBe(`${openRegistry}/${namespace}/app@${digests[0]}`);
    const copied = await manifestBytes(openRegistry, `${namespace}/app`, "latest");
    expect(copied.equals(imageManifest)).toBe(true);
    const manifest = JSON.parse(imageManifest.toString("utf8")) as {
      config: { digest: string };
      layers: { digest: string }[];
    };
    for (const blob of [manifest.config, ...manifest.layers]) {
      expect(await blobExists(`${namespace}/app`, blob.digest)).toBe(true);
    }
  });

  it("copies an index and its child manifest", async () => {
    const record = await indexA.publish({ name: "multi", tag: "latest" }, pinned(1));
    expect(record.digest).toBe(digests[1]);
    const source = await manifestBytes(openRegistry, sourceRepository, "index-one");
    const copied = await manifestBytes(openRegistry, `${namespace}/multi`, "latest");
    expect(copied.equals(source)).toBe(true);
    const child = await manifestBytes(openRegistry, `${namespace}/multi`, digests[0]!);
    expect(child.equals(imageManifest)).toBe(true);
  });

  it("resolves a publish from another machine", async () => {
    const record = await indexB.resolve({ name: "app", tag: "latest" });
    expect(record.digest).toBe(digests[0]);
    expect(record.reference).toBe(`${openRegistry}/${namespace}/app@${digests[0]}`);
    expect(record.action).toBe("publish");
    expect(record.host).toBe(os.hostname());
    expect(Date.parse(record.publishedAt)).not.toBeNaN();
  });

  it("throws NotFoundError for a missing tag", async () => {
    const error = await indexB
      .resolve({ name: "app", tag: "nope" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as NotFoundError).hint).toContain("latest");
    await expect(indexB.tags("never-published")).rejects.toBeInstanceOf(NotFoundError);
    await expect(indexB.history({ name: "app", tag: "nope" })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it("lists tags across pages, newest first", async () => {
    await indexA.publish({ name: "app", tag: "v1" }, pinned(0));
    await indexA.publish({ name: "app", tag: "v2" }, pinned(1));
    await indexB.publish({ name: "app", tag: "v3" }, pinned(2));
    // With history tags the repository has far more tags than one page of 2.
    expect((await listTags(openRegistry, `${namespace}/app`)).length).toBeGreaterThan(6);
    const records = await indexB.tags("app");
    expect(records.map((record) => record.tag)).toEqual(["v3", "v2", "v1", "latest"]);
    expect(records.map((record) => record.digest)).toEqual([
      digests[2],
      digests[1],
      digests[0],
      digests[0],
    ]);
  });

  it("shares history between two machines", async () => {
    const ref = { name: "app", tag: "shared" };
    await indexA.publish(ref, pinned(0));
    await indexB.publish(ref, pinned(1));
    for (const index of [indexA, indexB]) {
      const history = await index.history(ref);
      expect(history.map((record) => [record.digest, record.action])).toEqual([
        [digests[1], "publish"],
        [digests[0], "publish"],
      ]);
    }
    expect((await indexA.resolve(ref)).digest).toBe(digests[1]);
  });

  it("rolls back like undo and to a chosen digest", async () => {
    const ref = { name: "app", tag: "rb" };
    for (const n of [0, 1, 2]) await indexA.publish(ref, pinned(n));
    expect((await indexB.rollback(ref)).digest).toBe(digests[1]);
    expect(await manifestDigest(openRegistry, `${namespace}/app`, "rb")).toBe(digests[1]);
    expect((await indexA.rollback(ref)).digest).toBe(digests[0]);
    await expect(indexA.rollback(ref)).rejects.toBeInstanceOf(NotFoundError);
    const record = await indexB.rollback(ref, { to: digests[2] });
    expect(record.action).toBe("rollback");
    expect(record.reference).toBe(`${openRegistry}/${namespace}/app@${digests[2]}`);
    expect(await manifestDigest(openRegistry, `${namespace}/app`, "rb")).toBe(digests[2]);
    const history = await indexA.history(ref);
    expect(history.map((entry) => [entry.digest, entry.action])).toEqual([
      [digests[2], "rollback"],
      [digests[0], "rollback"],
      [digests[1], "rollback"],
      [digests[2], "publish"],
      [digests[1], "publish"],
      [digests[0], "publish"],
    ]);
    await expect(indexA.rollback(ref, { to: `sha256:${"9".repeat(64)}` })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });

  it("untags with a tombstone and rolls the untag back", async () => {
    const ref = { name: "app", tag: "gone" };
    await indexA.publish(ref, pinned(1));
    const removed = await indexB.untag(ref);
    expect(removed.digest).toBe(digests[1]);
    expect(await manifestDigest(openRegistry, `${namespace}/app`, "gone")).toBe(tombstoneDigest);
    await expect(indexA.resolve(ref)).rejects.toBeInstanceOf(NotFoundError);
    expect(await indexA.get(ref)).toBeUndefined();
    expect((await indexA.tags("app")).map((record) => record.tag)).not.toContain("gone");
    expect((await indexA.history(ref)).map((record) => record.action)).toEqual([
      "untag",
      "publish",
    ]);
    await expect(indexA.untag(ref)).rejects.toBeInstanceOf(NotFoundError);
    expect((await indexA.rollback(ref)).digest).toBe(digests[1]);
    expect((await indexB.resolve(ref)).digest).toBe(digests[1]);
  });

  it("rejects a stale --expect and changes nothing", async () => {
    const ref = { name: "app", tag: "cas" };
    await indexA.publish(ref, pinned(0), null);
    const error = await indexB
      .publish(ref, pinned(1), digests[2])
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).exitCode).toBe(4);
    expect((error as ConflictError).message).toContain(digests[0]);
    await expect(indexB.publish(ref, pinned(1), null)).rejects.toBeInstanceOf(ConflictError);
    expect(await manifestDigest(openRegistry, `${namespace}/app`, "cas")).toBe(digests[0]);
    expect(await indexA.history(ref)).toHaveLength(1);

    await indexB.publish(ref, pinned(1), digests[0]);
    expect((await indexA.resolve(ref)).digest).toBe(digests[1]);
    await expect(indexA.rollback(ref, { expect: digests[0] })).rejects.toBeInstanceOf(
      ConflictError,
    );
    await expect(indexA.untag(ref, digests[0])).rejects.toBeInstanceOf(ConflictError);
    expect((await indexB.resolve(ref)).digest).toBe(digests[1]);
  });

  it("lets one of two racing --expect publishes win in the history", async () => {
    const ref = { name: "app", tag: "race" };
    await indexA.publish(ref, pinned(0));
    const results = await Promise.allSettled([
      indexA.publish(ref, pinned(1), digests[0]),
      indexB.publish(ref, pinned(2), digests[0]),
    ]);
    const won = results.filter((result) => result.status === "fulfilled");
    const lost = results.filter((result) => result.status === "rejected");
    // Both calls can succeed when one reads the history before the other's entry lands, but the
    // history applies only one of the two entries.
    expect(won.length).toBeGreaterThanOrEqual(1);
    for (const result of lost) expect(result.reason).toBeInstanceOf(ConflictError);
    expect(await indexA.history(ref)).toHaveLength(2);
  });

  it("lists names with a prefix", async () => {
    await indexA.publish({ name: "app-two", tag: "latest" }, pinned(0));
    await indexA.publish({ name: "untagged", tag: "latest" }, pinned(0));
    await indexA.untag({ name: "untagged", tag: "latest" });
    const all = await indexB.names();
    expect(all.map((listing) => listing.name)).toEqual(["app", "app-two", "multi", "src"]);
    const prefixed = await indexB.names("app-");
    expect(prefixed.map((listing) => [listing.name, listing.tags.map((tag) => tag.tag)])).toEqual([
      ["app-two", ["latest"]],
    ]);
  });

  it("rejects a local image ID", async () => {
    const value: NewTagValue = { reference: digests[0]!, digest: digests[0]!, action: "build" };
    await expect(indexA.publish({ name: "app", tag: "id" }, value)).rejects.toBeInstanceOf(
      UsageError,
    );
  });

  describe("with the auth registry", () => {
    let credentials: RegistryCredentials;
    let location: ReturnType<typeof parseRegistry>;

    beforeAll(async () => {
      credentials = await readAuthRegistryCredentials();
      location = parseRegistry(`${authRegistry}/${namespace}`);
    });

    async function dockerConfig(config: object): Promise<NodeJS.ProcessEnv> {
      const dir = await tempDir("docker-config");
      await fs.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
      return { ...envA, DOCKER_CONFIG: dir };
    }

    it("fails without credentials and names the registry", async () => {
      const env = await dockerConfig({});
      const index = new RegistryIndex(location, env);
      const error = await index
        .publish({ name: "app", tag: "latest" }, pinned(0))
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(OperationError);
      const { message, hint, exitCode } = error as OperationError;
      expect(exitCode).toBe(1);
      expect(message).toContain(authRegistry);
      expect(hint).toContain(`docker login ${authRegistry}`);
      expect(`${message}\n${hint}`).not.toContain(credentials.password);
      expect(await listTags(authRegistry, `${namespace}/app`, credentials)).toEqual([]);
    });

    it("fails with a wrong password and shows no secret", async () => {
      const wrong = "not-the-password-4711";
      const auth = Buffer.from(`${credentials.username}:${wrong}`).toString("base64");
      const env = await dockerConfig({ auths: { [authRegistry]: { auth } } });
      const error = await new RegistryIndex(location, env)
        .resolve({ name: "app", tag: "latest" })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(OperationError);
      const visibleText = `${(error as OperationError).message}\n${(error as OperationError).hint}`;
      expect(visibleText).toContain(authRegistry);
      expect(visibleText).not.toContain(wrong);
      expect(visibleText).not.toContain(auth);
    });

    it("copies from the open registry with credentials", async () => {
      const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString(
        "base64",
      );
      const env = await dockerConfig({ auths: { [authRegistry]: { auth } } });
      const index = new RegistryIndex(location, env);
      const record = await index.publish({ name: "app", tag: "latest" }, pinned(0));
      expect(record.reference).toBe(`${authRegistry}/${namespace}/app@${digests[0]}`);
      const copied = await manifestBytes(authRegistry, `${namespace}/app`, "latest", credentials);
      expect(copied.equals(imageManifest)).toBe(true);
      const other = new RegistryIndex(location, {
        ...env,
        MODAL_IMAGE_HOME: envB.MODAL_IMAGE_HOME,
      });
      expect((await other.resolve({ name: "app", tag: "latest" })).digest).toBe(digests[0]);
      expect(await other.history({ name: "app", tag: "latest" })).toHaveLength(1);
    });
  });
});
