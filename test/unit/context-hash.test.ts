import { chmod, mkdir, mkdtemp, rm, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { collectContext, type ContextEntry } from "../../src/context/collect.js";
import { hashContext } from "../../src/context/hash.js";
import { OperationError } from "../../src/errors.js";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-hash-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function hashDir(path: string, prefix = "ctx/0"): Promise<string> {
  return hashContext(await collectContext([{ prefix, localPath: path, kind: "dir" }]));
}

/** Creates `root/name` with the files, each holding its given content. */
async function makeTree(name: string, files: Record<string, string>): Promise<string> {
  const base = join(root, name);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(base, path, ".."), { recursive: true });
    await writeFile(join(base, path), content);
  }
  return base;
}

describe("hashContext", () => {
  test("format is sha256 hex", async () => {
    const tree = await makeTree("a", { "x.txt": "x" });

    expect(await hashDir(tree)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  test("same content in another place hashes the same", async () => {
    const first = await makeTree("a", { "x.txt": "x", "sub/y.txt": "y" });
    const second = await makeTree("b", { "x.txt": "x", "sub/y.txt": "y" });
    await utimes(join(second, "x.txt"), new Date(1_000_000), new Date(2_000_000));

    expect(await hashDir(second)).toBe(await hashDir(first));
  });

  test("content change changes the hash", async () => {
    const tree = await makeTree("a", { "x.txt": "x" });
    const before = await hashDir(tree);
    await writeFile(join(tree, "x.txt"), "y");

    expect(await hashDir(tree)).not.toBe(before);
  });

  test("mode change changes the hash", async () => {
    const tree = await makeTree("a", { "run.sh": "echo" });
    const before = await hashDir(tree);
    await chmod(join(tree, "run.sh"), 0o755);

    expect(await hashDir(tree)).not.toBe(before);
  });

  test("rename changes the hash", async () => {
    const first = await makeTree("a", { "x.txt": "x" });
    const second = await makeTree("b", { "y.txt": "x" });

    expect(await hashDir(second)).not.toBe(await hashDir(first));
  });

  test("prefix changes the hash", async () => {
    const tree = await makeTree("a", { "x.txt": "x" });

    expect(await hashDir(tree, "ctx/1")).not.toBe(await hashDir(tree, "ctx/0"));
  });

  test("symlink target changes the hash", async () => {
    const first = join(root, "a");
    const second = join(root, "b");
    await mkdir(first);
    await mkdir(second);
    await symlink("target-one", join(first, "link"));
    await symlink("target-two", join(second, "link"));

    expect(await hashDir(second)).not.toBe(await hashDir(first));
  });

  test("file boundaries are framed", async () => {
    const first = await makeTree("a", { a: "xy", b: "z" });
    const second = await makeTree("b", { a: "x", b: "yz" });

    expect(await hashDir(second)).not.toBe(await hashDir(first));
  });

  test("file and symlink with equal text differ", async () => {
    const first = await makeTree("a", { entry: "target" });
    const second = join(root, "b");
    await mkdir(second);
    await symlink("target", join(second, "entry"));

    expect(await hashDir(second)).not.toBe(await hashDir(first));
  });

  test("empty file and directory differ", async () => {
    const first = await makeTree("a", { entry: "" });
    const second = join(root, "b");
    await mkdir(join(second, "entry"), { recursive: true });
    await chmod(join(first, "entry"), 0o755);

    expect(await hashDir(second)).not.toBe(await hashDir(first));
  });

  test("framing is pinned", async () => {
    // Changing the framing changes every definition hash, so it must be a deliberate change
    // together with a new format name in hash.ts.
    const base = { sourcePath: "/unused", mtimeMs: 0, ctimeMs: 0, ino: 0, dev: 0, size: 0 };
    const entries: ContextEntry[] = [
      { ...base, archivePath: "ctx/0", type: "directory", mode: 0o755 },
      { ...base, archivePath: "ctx/0/file", type: "file", mode: 0o644, size: 3 },
      { ...base, archivePath: "ctx/0/link", type: "symlink", mode: 0o777, linkTarget: "target" },
    ];
    const digestFile = () => Promise.resolve(`sha256:${"0".repeat(64)}`);

    expect(await hashContext(entries, digestFile)).toBe(
      "sha256:4f73224bed716bb84d7fddfb77278e555439da0969a25c601e96c2231ddbdfe7",
    );
  });

  test("file changed after collect fails", async () => {
    const tree = await makeTree("a", { "x.txt": "content" });
    const entries = await collectContext([{ prefix: "ctx/0", localPath: tree, kind: "dir" }]);
    await truncate(join(tree, "x.txt"), 1);

    const result = hashContext(entries);

    await expect(result).rejects.toThrow(OperationError);
    await expect(result).rejects.toThrow(join(tree, "x.txt"));
  });
});
