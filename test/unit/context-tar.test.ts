import { execFileSync } from "node:child_process";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  rm,
  symlink,
  truncate,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extract, type Header } from "tar-stream";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { collectContext, type ContextEntry } from "../../src/context/collect.js";
import { packContext } from "../../src/context/tar.js";
import { OperationError } from "../../src/errors.js";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-tar-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

interface ExtractedEntry {
  header: Header;
  content: Buffer;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Extracts with tar-stream, independent of how the archive was written. */
async function extractAll(archive: Buffer): Promise<ExtractedEntry[]> {
  const extractor = extract();
  extractor.end(archive);
  const entries: ExtractedEntry[] = [];
  for await (const entry of extractor) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(Buffer.from(chunk as Uint8Array));
    entries.push({ header: entry.header, content: Buffer.concat(chunks) });
  }
  return entries;
}

async function collectDir(localPath: string): Promise<ContextEntry[]> {
  return collectContext([{ prefix: "ctx/0", localPath, kind: "dir" }]);
}

async function packAndExtract(entries: readonly ContextEntry[]): Promise<ExtractedEntry[]> {
  return extractAll(await readAll(packContext(entries, [])));
}

describe("packContext round trip", () => {
  test("names, types, modes, links and contents", async () => {
    await mkdir(join(root, "bin"));
    await writeFile(join(root, "bin", "run.sh"), "#!/bin/sh\necho hi\n");
    await chmod(join(root, "bin", "run.sh"), 0o755);
    await writeFile(join(root, "secret"), "s3cret");
    await chmod(join(root, "secret"), 0o600);
    await symlink("/etc/passwd", join(root, "outside"));
    await symlink("bin/run.sh", join(root, "relative"));
    const entries = await collectDir(root);

    const extracted = await extractAll(
      await readAll(
        packContext(entries, [{ archivePath: "Dockerfile", content: "FROM scratch\n" }]),
      ),
    );

    expect(extracted.map((entry) => entry.header.name)).toEqual([
      "Dockerfile",
      "ctx/0",
      "ctx/0/bin",
      "ctx/0/bin/run.sh",
      "ctx/0/outside",
      "ctx/0/relative",
      "ctx/0/secret",
    ]);
    expect(extracted.map((entry) => entry.header.type)).toEqual([
      "file",
      "directory",
      "directory",
      "file",
      "symlink",
      "symlink",
      "file",
    ]);
    const byName = new Map(extracted.map((entry) => [entry.header.name, entry]));
    expect(byName.get("Dockerfile")?.content.toString()).toBe("FROM scratch\n");
    expect(byName.get("ctx/0/bin/run.sh")?.content.toString()).toBe("#!/bin/sh\necho hi\n");
    expect(byName.get("ctx/0/bin/run.sh")?.header.mode).toBe(0o755);
    expect(byName.get("ctx/0/secret")?.header.mode).toBe(0o600);
    expect(byName.get("ctx/0/outside")?.header.linkname).toBe("/etc/passwd");
    expect(byName.get("ctx/0/outside")?.content.byteLength).toBe(0);
    expect(byName.get("ctx/0/relative")?.header.linkname).toBe("bin/run.sh");
  });

  test("owner is root and mtime is kept in seconds", async () => {
    await writeFile(join(root, "a"), "a");
    const entries = await collectDir(root);

    const extracted = await packAndExtract(entries);

    entries.forEach((entry, index) => {
      const header = extracted[index]?.header;
      expect(header?.uid).toBe(0);
      expect(header?.gid).toBe(0);
      expect(header?.uname).toBe("");
      expect(header?.gname).toBe("");
      expect(header?.mtime.getTime()).toBe(Math.floor(entry.mtimeMs / 1000) * 1000);
    });
  });

  test("mode 0 is kept", async () => {
    await writeFile(join(root, "locked"), "x");
    await chmod(join(root, "locked"), 0);

    const extracted = await packAndExtract(await collectDir(root));

    expect(extracted[1]?.header.name).toBe("ctx/0/locked");
    expect(extracted[1]?.header.mode).toBe(0);
  });

  test("generated file modes and byte content", async () => {
    const bytes = new Uint8Array([0, 1, 2, 3, 4, 5]).subarray(2, 5);

    const extracted = await extractAll(
      await readAll(
        packContext(
          [],
          [
            { archivePath: "Dockerfile", content: "FROM scratch\n" },
            { archivePath: "gen/run.sh", content: bytes, mode: 0o755 },
          ],
        ),
      ),
    );

    expect(extracted[0]?.header.mode).toBe(0o644);
    expect(extracted[1]?.header.mode).toBe(0o755);
    expect([...(extracted[1]?.content ?? [])]).toEqual([2, 3, 4]);
  });

  test("duplicate archive paths are rejected", () => {
    const generated = [
      { archivePath: "Dockerfile", content: "a" },
      { archivePath: "Dockerfile", content: "b" },
    ];

    expect(() => packContext([], generated)).toThrow(/duplicate path.*Dockerfile/);
  });
});

describe("packContext long names", () => {
  const longName = `${"n".repeat(146)}.txt`;
  const deepPath = `${"a".repeat(100)}/${"b".repeat(100)}/${"c".repeat(94)}.txt`;
  const longTarget = `../${"t".repeat(120)}`;

  async function makeLongNames(): Promise<ContextEntry[]> {
    await writeFile(join(root, longName), "long");
    await mkdir(join(root, "a".repeat(100), "b".repeat(100)), { recursive: true });
    await writeFile(join(root, deepPath), "deep");
    await symlink(longTarget, join(root, "link"));
    await writeFile(join(root, "\u00e9t\u00e9 \u{1F600}.txt"), "unicode");
    return collectDir(root);
  }

  test("150-byte name and 300-byte path round-trip", async () => {
    expect(Buffer.byteLength(longName)).toBe(150);
    expect(Buffer.byteLength(`ctx/0/${deepPath}`)).toBe(306);
    const entries = await makeLongNames();

    const extracted = await packAndExtract(entries);

    const byName = new Map(extracted.map((entry) => [entry.header.name, entry]));
    expect(extracted.map((entry) => entry.header.name)).toEqual(
      entries.map((entry) => entry.archivePath),
    );
    expect(byName.get(`ctx/0/${longName}`)?.content.toString()).toBe("long");
    expect(byName.get(`ctx/0/${deepPath}`)?.content.toString()).toBe("deep");
    expect(byName.get("ctx/0/link")?.header.linkname).toBe(longTarget);
    expect(byName.get("ctx/0/\u00e9t\u00e9 \u{1F600}.txt")?.content.toString()).toBe("unicode");
  });

  test("GNU tar reads the PAX names", async () => {
    const entries = await makeLongNames();
    const archive = await readAll(packContext(entries, []));

    const listing = execFileSync("tar", ["-tf", "-"], { input: archive }).toString("utf8");

    const names = listing.split("\n").filter(Boolean);
    expect(names).toContain(`ctx/0/${longName}`);
    expect(names).toContain(`ctx/0/${deepPath}`);
    expect(names).toContain("ctx/0/\u00e9t\u00e9 \u{1F600}.txt");
    const verbose = execFileSync("tar", ["-tvf", "-"], { input: archive }).toString("utf8");
    expect(verbose).toContain(`ctx/0/link -> ${longTarget}`);
  });
});

describe("packContext changed files", () => {
  async function packError(entries: readonly ContextEntry[]): Promise<unknown> {
    return readAll(packContext(entries, [])).then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  test("file truncated after collect fails the stream", async () => {
    const path = join(root, "data.bin");
    await writeFile(path, Buffer.alloc(4096, 1));
    const entries = await collectDir(root);
    await truncate(path, 10);

    const error = await packError(entries);

    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toContain("size changed from 4096 to 10 bytes");
  });

  test("file grown after collect fails the stream", async () => {
    const path = join(root, "data.bin");
    await writeFile(path, "short");
    const entries = await collectDir(root);
    await writeFile(path, "much longer now");

    const error = await packError(entries);

    expect((error as Error).message).toContain(path);
  });

  test("deleted file fails the stream", async () => {
    const path = join(root, "gone.txt");
    await writeFile(path, "x");
    const entries = await collectDir(root);
    await unlink(path);

    const error = await packError(entries);

    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain(`${path}: it no longer exists`);
  });

  test("file replaced by a symlink is not followed", async () => {
    const path = join(root, "swap.txt");
    await writeFile(path, "12345678");
    const entries = await collectDir(root);
    await writeFile(join(root, "other"), "abcdefgh");
    await unlink(path);
    await symlink(join(root, "other"), path);

    const error = await packError(entries);

    expect((error as Error).message).toContain(`${path}: it was replaced by a symbolic link`);
  });
});

describe("packContext streaming", () => {
  test("large file streams with bounded memory", async () => {
    const size = 256 * 1024 * 1024;
    const path = join(root, "big.bin");
    await writeFile(path, "");
    // A sparse file: no disk space, and reading it returns zeros.
    await truncate(path, size);
    const entries = await collectDir(root);
    const before = process.memoryUsage().rss;
    let peak = before;
    let total = 0;

    for await (const chunk of packContext(entries, [])) {
      total += (chunk as Uint8Array).byteLength;
      peak = Math.max(peak, process.memoryUsage().rss);
    }

    // Two 512-byte headers, the content, and two 512-byte end-of-archive blocks.
    expect(total).toBe(512 * 2 + size + 1024);
    // Reading the whole file into memory would add at least 256 MiB.
    expect(peak - before).toBeLessThan(96 * 1024 * 1024);
  });

  test("destroying the stream early closes the files", async () => {
    await writeFile(join(root, "a.bin"), Buffer.alloc(8 * 1024 * 1024));
    const entries = await collectDir(root);
    const openBefore = (await readdir("/proc/self/fd")).length;

    const stream = packContext(entries, []) as NodeJS.ReadableStream & { destroy(): void };
    for await (const _chunk of stream) break;
    stream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect((await readdir("/proc/self/fd")).length).toBe(openBefore);
  });
});
