import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { execa } from "execa";
import { extract } from "tar-stream";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { collectContext, type ContextEntry } from "../../src/context/collect.js";
import { packContext } from "../../src/context/tar.js";
import { ignoreFixtures, writeFixture } from "../helpers/context-fixtures.js";

/** One path of the tree that a build copied to /ctx, read back with `docker cp`. */
interface CopiedEntry {
  path: string;
  type: string;
  mode: number;
  linkTarget: string | undefined;
  sha256: string | undefined;
}

// DOCKER_BUILDKIT=0 selects the classic builder, which receives the context as one tar, as
// modal-image sends it. FROM scratch needs no base image, and `docker cp` returns the copied tree
// as a tar with exact names (newlines included), types, modes and link targets.
const buildEnv = { DOCKER_BUILDKIT: "0" };

async function buildAndCopyOut(buildArgs: readonly string[], context?: NodeJS.ReadableStream) {
  const tag = `modal-image-test/ctx-${randomBytes(6).toString("hex")}`;
  let container: string | undefined;
  try {
    const build = execa("docker", ["build", "--quiet", "--force-rm", "--tag", tag, ...buildArgs], {
      env: buildEnv,
      stdin: context === undefined ? "ignore" : "pipe",
    });
    if (context !== undefined && build.stdin !== null) context.pipe(build.stdin);
    await build;
    container = (await execa("docker", ["create", tag, "unused-command"])).stdout.trim();
    return await copyOut(container, "/ctx");
  } finally {
    if (container !== undefined)
      await execa("docker", ["rm", "--force", container], { reject: false });
    await execa("docker", ["image", "rm", "--force", tag], { reject: false });
  }
}

/** Lists the tree at `path` in the container, relative to `path`, without `path` itself. */
async function copyOut(container: string, path: string): Promise<CopiedEntry[]> {
  const copy = execa("docker", ["cp", `${container}:${path}`, "-"], {
    encoding: "buffer",
    buffer: false,
  });
  const extractor = extract();
  copy.stdout.pipe(extractor);

  const entries: CopiedEntry[] = [];
  const root = posix.basename(path);
  for await (const entry of extractor) {
    const hash = createHash("sha256");
    for await (const chunk of entry) hash.update(chunk as Uint8Array);
    const name = entry.header.name.replace(/\/$/, "");
    if (name === root) continue;
    entries.push({
      path: name.slice(root.length + 1),
      type: entry.header.type,
      // Go's tar writer keeps the file type bits in the mode field.
      mode: entry.header.mode & 0o7777,
      linkTarget: entry.header.linkname ?? undefined,
      sha256: entry.header.type === "file" ? hash.digest("hex") : undefined,
    });
  }
  await copy;
  return entries;
}

/** What Docker must have copied for `entries`: the same paths, types, modes, targets and bytes. */
async function describeEntries(entries: readonly ContextEntry[]): Promise<CopiedEntry[]> {
  const [rootEntry, ...rest] = entries;
  const prefix = `${rootEntry?.archivePath ?? ""}/`;
  return Promise.all(
    rest.map(async (entry) => ({
      path: entry.archivePath.slice(prefix.length),
      type: entry.type,
      mode: entry.mode,
      linkTarget: entry.linkTarget,
      sha256:
        entry.type === "file"
          ? createHash("sha256")
              .update(await readFile(entry.sourcePath))
              .digest("hex")
          : undefined,
    })),
  );
}

/**
 * Checks that Docker copied exactly `expected`, plus the parent directories of re-included paths
 * inside excluded directories. Like ours, Docker's tar has no entry for those, and the daemon
 * creates them while extracting.
 */
function expectSameTree(copied: readonly CopiedEntry[], expected: readonly CopiedEntry[]): void {
  const expectedPaths = new Set(expected.map((entry) => entry.path));
  const implied = new Set<string>();
  for (const path of expectedPaths) {
    for (let parent = posix.dirname(path); parent !== "."; parent = posix.dirname(parent)) {
      if (!expectedPaths.has(parent)) implied.add(parent);
    }
  }

  const copiedByPath = new Map(copied.map((entry) => [entry.path, entry]));
  expect([...copiedByPath.keys()].sort()).toEqual([...expectedPaths, ...implied].sort());
  for (const path of implied) expect(copiedByPath.get(path)?.type, path).toBe("directory");
  for (const entry of expected) expect(copiedByPath.get(entry.path), entry.path).toEqual(entry);
}

describe.skipIf(!!process.env.MODAL_IMAGE_STACK_MISSING && !process.env.CI)(
  "build context against docker build",
  () => {
    let root: string;

    beforeEach(async () => {
      root = await mkdtemp(join(tmpdir(), "modal-image-context-docker-"));
    });

    afterEach(async () => {
      await rm(root, { recursive: true, force: true });
    });

    test.each(ignoreFixtures)("docker build keeps: $name", async (fixture) => {
      await writeFixture(root, fixture);
      const entries = await collectContext([{ prefix: "ctx/0", localPath: root, kind: "dir" }]);

      const copied = await buildAndCopyOut([root]);

      expect(entries.slice(1).map((entry) => entry.archivePath.slice("ctx/0/".length))).toEqual(
        fixture.expected,
      );
      expectSameTree(copied, await describeEntries(entries));
    });

    test.each(ignoreFixtures)("packed context builds: $name", async (fixture) => {
      await writeFixture(root, fixture);
      const entries = await collectContext([{ prefix: "ctx/0", localPath: root, kind: "dir" }]);
      const dockerfile = { archivePath: "Dockerfile", content: "FROM scratch\nCOPY ctx/0 /ctx\n" };

      const copied = await buildAndCopyOut(["-"], packContext(entries, [dockerfile]));

      expectSameTree(copied, await describeEntries(entries));
    });
  },
);
