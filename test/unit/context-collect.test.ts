import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  collectContext,
  type ContextEntry,
  type ContextSource,
} from "../../src/context/collect.js";
import { UsageError } from "../../src/errors.js";
import { ignoreFixtures, writeFixture } from "../helpers/context-fixtures.js";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-collect-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Creates files under `base`, each containing its own path. */
async function makeFiles(base: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    await mkdir(join(base, path, ".."), { recursive: true });
    await writeFile(join(base, path), path);
  }
}

function dirSource(localPath: string, extra: Partial<ContextSource> = {}): ContextSource {
  return { prefix: "ctx/0", localPath, kind: "dir", ...extra };
}

/** Paths relative to the source directory, without the entry for the directory itself. */
function relativePaths(entries: readonly ContextEntry[], prefix = "ctx/0"): string[] {
  return entries
    .filter((entry) => entry.archivePath !== prefix)
    .map((entry) => entry.archivePath.slice(prefix.length + 1));
}

async function collectDir(localPath: string, extra: Partial<ContextSource> = {}) {
  return relativePaths(await collectContext([dirSource(localPath, extra)]));
}

describe("collectContext .dockerignore rules", () => {
  test.each(ignoreFixtures)("$name", async (fixture) => {
    await writeFixture(root, fixture);

    expect(await collectDir(root)).toEqual(fixture.expected);
  });
});

describe("collectContext ignore option", () => {
  test("patterns apply after .dockerignore", async () => {
    await makeFiles(root, ["README.md", "notes.md", "a.tmp", "keep.tmp", "build/out"]);
    await writeFile(join(root, ".dockerignore"), "*.md\nbuild\n");

    const paths = await collectDir(root, { ignore: ["*.tmp", "!keep.tmp", "!README.md"] });

    expect(paths).toEqual([".dockerignore", "README.md", "keep.tmp"]);
  });

  test("patterns work without .dockerignore", async () => {
    await makeFiles(root, ["a.log", "sub/b.log", "sub/c.txt"]);

    expect(await collectDir(root, { ignore: ["**/*.log"] })).toEqual(["sub", "sub/c.txt"]);
  });

  test("predicate skips an excluded directory whole", async () => {
    await makeFiles(root, ["node_modules/x/y.js", "src/a.ts", "src/a.tmp"]);
    const seen: string[] = [];
    const ignore = (path: string): boolean => {
      seen.push(path);
      return path === "node_modules" || path.endsWith(".tmp");
    };

    const paths = await collectDir(root, { ignore });

    expect(paths).toEqual(["src", "src/a.ts"]);
    expect(seen).not.toContain("node_modules/x");
    expect(seen).toContain("src/a.tmp");
  });

  test("predicate and .dockerignore both apply", async () => {
    await makeFiles(root, ["a.txt", "b.txt", "c.txt"]);
    await writeFile(join(root, ".dockerignore"), "a.txt\n.dockerignore\n");

    expect(await collectDir(root, { ignore: (path) => path === "b.txt" })).toEqual(["c.txt"]);
  });
});

describe("collectContext invalid patterns", () => {
  test.each([
    ["lone exclamation mark", "!\n"],
    ["unterminated class", "src/[ab\n"],
    ["empty class", "[]\n"],
    ["trailing backslash", "a\\\n"],
    ["reversed range", "[z-a]\n"],
  ])("%s in .dockerignore", async (_name, text) => {
    await writeFile(join(root, ".dockerignore"), text);

    const result = collectContext([dirSource(root)]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(join(root, ".dockerignore"));
  });

  test("invalid ignore option pattern", async () => {
    const result = collectContext([dirSource(root, { ignore: ["ok", "[x"] })]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(/"\[x".*ignore option/);
  });

  test("ignore option pattern with line break", async () => {
    const result = collectContext([dirSource(root, { ignore: ["a\nb"] })]);

    await expect(result).rejects.toThrow(/line break/);
  });

  test("escaped special characters are valid", async () => {
    await makeFiles(root, ["#x", "!y", "*z", "plain"]);
    await writeFile(join(root, ".dockerignore"), "\\#x\n\\!y\n\\*z\n");

    expect(await collectDir(root)).toEqual([".dockerignore", "plain"]);
  });
});

describe("collectContext symlinks", () => {
  test("link pointing outside is kept, not followed", async () => {
    const outside = await mkdtemp(join(tmpdir(), "modal-image-outside-"));
    try {
      await makeFiles(outside, ["secret.txt"]);
      const source = join(root, "src");
      await mkdir(source);
      await symlink(outside, join(source, "outside-dir"));
      await symlink(join(outside, "secret.txt"), join(source, "outside-file"));

      const entries = await collectContext([dirSource(source)]);

      expect(relativePaths(entries)).toEqual(["outside-dir", "outside-file"]);
      const link = entries.find((entry) => entry.archivePath === "ctx/0/outside-dir");
      expect(link?.type).toBe("symlink");
      expect(link?.linkTarget).toBe(outside);
      expect(link?.size).toBe(0);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  test("dangling link is kept", async () => {
    await symlink("missing/target", join(root, "dangling"));

    const [, entry] = await collectContext([dirSource(root)]);

    expect(entry?.archivePath).toBe("ctx/0/dangling");
    expect(entry?.type).toBe("symlink");
    expect(entry?.linkTarget).toBe("missing/target");
  });

  test("addLocalFile of a symlink is rejected", async () => {
    await makeFiles(root, ["target.txt"]);
    await symlink("target.txt", join(root, "link.txt"));

    const result = collectContext([fileSource(join(root, "link.txt"))]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(`symbolic link: ${join(root, "link.txt")}`);
  });

  test("addLocalDir of a symlink is rejected", async () => {
    await mkdir(join(root, "real"));
    await symlink("real", join(root, "link"));

    const result = collectContext([dirSource(join(root, "link"))]);

    await expect(result).rejects.toThrow(`symbolic link: ${join(root, "link")}`);
  });

  test(".dockerignore symlink is rejected", async () => {
    const outside = join(root, "outside-ignore");
    await writeFile(outside, "*\n");
    await mkdir(join(root, "src"));
    await symlink(outside, join(root, "src", ".dockerignore"));

    const result = collectContext([dirSource(join(root, "src"))]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(/\.dockerignore: it is a symbolic link/);
  });
});

function fileSource(localPath: string, prefix = "ctx/0"): ContextSource {
  return { prefix, localPath, kind: "file" };
}

describe("collectContext file sources", () => {
  test("entry uses the fixed name", async () => {
    const path = join(root, "[weird]*?.txt");
    await writeFile(path, "12345");
    await chmod(path, 0o640);

    const entries = await collectContext([fileSource(path, "ctx/3")]);

    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      archivePath: "ctx/3/file",
      sourcePath: path,
      type: "file",
      mode: 0o640,
      size: 5,
    });
  });

  test("missing file is rejected", async () => {
    const path = join(root, "missing.txt");

    const result = collectContext([fileSource(path)]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(`not found: ${path}`);
  });

  test("directory given as file is rejected", async () => {
    const result = collectContext([fileSource(root)]);

    await expect(result).rejects.toThrow(`addLocalFile path is a directory: ${root}`);
  });

  test("file given as directory is rejected", async () => {
    const path = join(root, "a.txt");
    await writeFile(path, "a");

    const result = collectContext([dirSource(path)]);

    await expect(result).rejects.toThrow(`addLocalDir path is not a directory: ${path}`);
  });

  test("missing directory is rejected", async () => {
    const path = join(root, "missing");

    await expect(collectContext([dirSource(path)])).rejects.toThrow(`not found: ${path}`);
  });
});

describe("collectContext special files", () => {
  test("FIFO is rejected with its path", async () => {
    execFileSync("mkfifo", [join(root, "pipe")]);

    const result = collectContext([dirSource(root)]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(`${join(root, "pipe")}: a FIFO (named pipe)`);
  });

  test("socket is rejected with its path", async () => {
    const path = join(root, "sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await expect(collectContext([dirSource(root)])).rejects.toThrow(`${path}: a socket`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test("excluded FIFO is skipped", async () => {
    execFileSync("mkfifo", [join(root, "pipe")]);
    await writeFile(join(root, ".dockerignore"), "pipe\n");

    expect(await collectDir(root)).toEqual([".dockerignore"]);
  });
});

describe("collectContext names", () => {
  test("odd names keep their bytes", async () => {
    const names = ["with space", "-dash", "new\nline", "e\u0301", "\u00e9", "tab\there"];
    await makeFiles(root, names);

    const entries = await collectContext([dirSource(root)]);

    expect(relativePaths(entries).sort()).toEqual([...names].sort());
    for (const entry of entries.slice(1)) {
      expect(entry.sourcePath).toBe(join(root, entry.archivePath.slice("ctx/0/".length)));
    }
  });

  test("long name and deep path", async () => {
    const longName = `${"x".repeat(150)}.txt`;
    const deepPath = `${"a".repeat(100)}/${"b".repeat(100)}/${"c".repeat(100)}.txt`;
    await makeFiles(root, [longName, deepPath]);

    const entries = await collectContext([dirSource(root)]);

    const file = entries.find((entry) => entry.archivePath === `ctx/0/${deepPath}`);
    expect(Buffer.byteLength(file?.archivePath ?? "")).toBeGreaterThan(255);
    expect(file?.size).toBe(Buffer.byteLength(deepPath));
    expect(relativePaths(entries)).toContain(longName);
  });

  test("name that is not UTF-8 is rejected", async () => {
    const name = Buffer.from([0x62, 0x61, 0x64, 0xff]);
    await writeFile(Buffer.concat([Buffer.from(`${root}/`), name]), "x");

    const result = collectContext([dirSource(root)]);

    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(/not valid UTF-8/);
  });

  test("excluded name that is not UTF-8 is skipped", async () => {
    const name = Buffer.from([0x62, 0x61, 0x64, 0xff]);
    await writeFile(Buffer.concat([Buffer.from(`${root}/`), name]), "x");
    await writeFile(join(root, ".dockerignore"), "bad*\n");

    expect(await collectDir(root)).toEqual([".dockerignore"]);
  });
});

describe("collectContext order and metadata", () => {
  test("entries sort by UTF-8 bytes across sources", async () => {
    // UTF-16 order puts U+1F600 before U+FF5E, UTF-8 byte order puts it after.
    await makeFiles(root, ["one/b", "one/a", "one/B", "one/\u{1F600}", "one/\uFF5E", "two.txt"]);

    const entries = await collectContext([
      dirSource(join(root, "one"), { prefix: "ctx/10" }),
      fileSource(join(root, "two.txt"), "ctx/2"),
      dirSource(join(root, "one"), { prefix: "ctx/1" }),
    ]);

    expect(entries.map((entry) => entry.archivePath)).toEqual([
      "ctx/1",
      "ctx/1/B",
      "ctx/1/a",
      "ctx/1/b",
      "ctx/1/\uFF5E",
      "ctx/1/\u{1F600}",
      "ctx/10",
      "ctx/10/B",
      "ctx/10/a",
      "ctx/10/b",
      "ctx/10/\uFF5E",
      "ctx/10/\u{1F600}",
      "ctx/2/file",
    ]);
  });

  test("root entry carries the directory mode", async () => {
    await chmod(root, 0o750);

    const [entry] = await collectContext([dirSource(root, { prefix: "ctx/5" })]);

    expect(entry).toMatchObject({ archivePath: "ctx/5", type: "directory", mode: 0o750, size: 0 });
  });

  test("entries carry mode, size and stat identity", async () => {
    await makeFiles(root, ["run.sh"]);
    await chmod(join(root, "run.sh"), 0o4755);

    const [, entry] = await collectContext([dirSource(root)]);

    expect(entry).toMatchObject({ type: "file", mode: 0o4755, size: "run.sh".length });
    expect(entry?.ino).toBeGreaterThan(0);
    expect(entry?.mtimeMs).toBeGreaterThan(0);
  });
});

describe("collectContext caller contract", () => {
  test("relative path is rejected", async () => {
    await expect(collectContext([dirSource("relative/dir")])).rejects.toThrow(/must be absolute/);
  });

  test("root prefix is rejected for a file", async () => {
    await writeFile(join(root, "f"), "x");
    await expect(collectContext([fileSource(join(root, "f"), "")])).rejects.toThrow(
      /invalid context prefix/,
    );
  });

  test("root prefix puts a directory at the top", async () => {
    await mkdir(join(root, "dir", "sub"), { recursive: true });
    await writeFile(join(root, "dir", "sub", "a.txt"), "a");
    await writeFile(join(root, "f"), "x");
    const entries = await collectContext([
      dirSource(join(root, "dir"), { prefix: "" }),
      fileSource(join(root, "f"), "ctx/0"),
    ]);
    expect(entries.map((entry) => entry.archivePath)).toEqual(["ctx/0/file", "sub", "sub/a.txt"]);
  });

  test.each(["/ctx", "ctx/", "ctx/../x", "..", "ctx//0"])(
    "prefix %j is rejected",
    async (prefix) => {
      await expect(collectContext([dirSource(root, { prefix })])).rejects.toThrow(
        /invalid context prefix/,
      );
    },
  );

  test("overlapping prefixes are rejected", async () => {
    const sources = [dirSource(root, { prefix: "ctx/1" }), dirSource(root, { prefix: "ctx/1/a" })];

    await expect(collectContext(sources)).rejects.toThrow(/overlap/);
  });
});
