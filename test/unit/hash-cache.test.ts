import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { collectContext, type ContextSource } from "../../src/context/collect.js";
import { hashContext } from "../../src/context/hash.js";
import { FileDigestCache, fileDigestCacheDir } from "../../src/context/hash-cache.js";

let root: string;
let home: string;
let tree: string;
let sources: ContextSource[];

// Files older than the cache's racy window, so that their digests are stored.
const longAgo = new Date(Date.now() - 3_600_000);

async function writeOld(path: string, content: string): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, content);
  await utimes(path, longAgo, longAgo);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-hash-cache-"));
  home = join(root, ".home");
  tree = join(root, "tree");
  await writeOld(join(tree, "a.txt"), "a");
  await writeOld(join(tree, "sub/b.txt"), "b");
  await writeOld(join(root, "single.txt"), "single");
  sources = [
    { prefix: "ctx/0", localPath: tree, kind: "dir" },
    { prefix: "ctx/1", localPath: join(root, "single.txt"), kind: "file" },
  ];
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Hashes `sources` through a cache in `home` and saves it, as prepareImage does. */
async function hashWithCache(): Promise<{ hash: string; cache: FileDigestCache }> {
  const entries = await collectContext(sources);
  const cache = await FileDigestCache.open(home, sources);
  const hash = await hashContext(entries, cache.digest);
  await cache.save();
  return { hash, cache };
}

/** Returns the inode of each cache file, sorted, which a rewrite through a rename changes. */
async function cacheFileInodes(): Promise<number[]> {
  const directory = fileDigestCacheDir(home);
  const names = await readdir(directory);
  const inodes = await Promise.all(
    names.map(async (name) => (await stat(join(directory, name))).ino),
  );
  return inodes.sort((a, b) => a - b);
}

async function hashWithoutCache(): Promise<string> {
  return hashContext(await collectContext(sources));
}

describe("FileDigestCache", () => {
  test("hash equals uncached hash", async () => {
    const first = await hashWithCache();
    const second = await hashWithCache();

    expect(first.hash).toBe(await hashWithoutCache());
    expect(second.hash).toBe(first.hash);
  });

  test("second run reads no file", async () => {
    const first = await hashWithCache();
    const second = await hashWithCache();

    expect(first.cache.counts).toEqual({ reused: 0, read: 3 });
    expect(second.cache.counts).toEqual({ reused: 3, read: 0 });
  });

  test("changed file is read again", async () => {
    await hashWithCache();
    await writeOld(join(tree, "sub/b.txt"), "B");

    const second = await hashWithCache();

    expect(second.cache.counts).toEqual({ reused: 2, read: 1 });
    expect(second.hash).toBe(await hashWithoutCache());
  });

  test("unchanged run rewrites no cache file", async () => {
    await hashWithCache();
    const before = await cacheFileInodes();

    await hashWithCache();

    expect(await cacheFileInodes()).toEqual(before);
  });

  test("removed file leaves the cache", async () => {
    await hashWithCache();
    await rm(join(tree, "sub/b.txt"));

    await hashWithCache();

    const directory = fileDigestCacheDir(home);
    const texts = await Promise.all(
      (await readdir(directory)).map((name) => readFile(join(directory, name), "utf8")),
    );
    expect(texts.join("\n")).toContain("a.txt");
    expect(texts.join("\n")).not.toContain("b.txt");
  });

  test("recent file is not stored", async () => {
    await writeFile(join(tree, "a.txt"), "fresh");
    await hashWithCache();

    const second = await hashWithCache();

    expect(second.cache.counts).toEqual({ reused: 2, read: 1 });
  });

  test("corrupt cache files are ignored", async () => {
    await hashWithCache();
    const directory = fileDigestCacheDir(home);
    const names = await readdir(directory);
    expect(names).toHaveLength(2);
    await writeFile(join(directory, names[0]!), "{not json");
    await writeFile(join(directory, names[1]!), JSON.stringify({ version: 1, files: [] }));

    const second = await hashWithCache();

    expect(second.cache.counts).toEqual({ reused: 0, read: 3 });
    expect(second.hash).toBe(await hashWithoutCache());
  });

  test("forged digest with wrong source is ignored", async () => {
    await hashWithCache();
    const directory = fileDigestCacheDir(home);
    for (const name of await readdir(directory)) {
      const file = join(directory, name);
      await writeFile(file, JSON.stringify({ version: 1, source: "/elsewhere", files: {} }));
    }

    const second = await hashWithCache();

    expect(second.cache.counts.reused).toBe(0);
  });

  test("unwritable home is not fatal", async () => {
    await writeFile(join(root, "not-a-directory"), "");
    home = join(root, "not-a-directory");

    const result = await hashWithCache();

    expect(result.hash).toBe(await hashWithoutCache());
  });

  test("no temporary files remain", async () => {
    await hashWithCache();
    await hashWithCache();

    const names = await readdir(fileDigestCacheDir(home));
    expect(names.filter((name) => !name.endsWith(".json"))).toEqual([]);
  });
});
