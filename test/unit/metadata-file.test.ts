import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BuildResult } from "../../src/commands/build.js";
import { UsageError } from "../../src/errors.js";
import {
  checkMetadataPath,
  metadataOf,
  writeMetadataFile,
} from "../../src/output/metadata-file.js";

const pushed = {
  image: "app",
  imageId: "sha256:" + "1".repeat(64),
  reference: "127.0.0.1:5000/app@sha256:" + "2".repeat(64),
  digest: "sha256:" + "2".repeat(64),
  repository: "127.0.0.1:5000/app",
  definitionHash: "sha256:" + "3".repeat(64),
  published: ["app:latest"],
  cached: false,
};
const local = {
  ...pushed,
  image: "tools",
  reference: pushed.imageId,
  digest: pushed.imageId,
  repository: undefined,
  published: [],
  cached: true,
};
const result: BuildResult = { images: [pushed, local] };

describe("metadata file", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "metadata-file-"));
  });

  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it("keys entries by definition", () => {
    const metadata = metadataOf(result);
    expect(Object.keys(metadata)).toEqual(["app", "tools"]);
    expect(metadata.app).toMatchObject(pushed);
  });

  it("adds the buildx digest keys", () => {
    const metadata = metadataOf(result);
    expect(metadata.app?.["containerimage.config.digest"]).toBe(pushed.imageId);
    expect(metadata.app?.["containerimage.digest"]).toBe(pushed.digest);
    expect(metadata.tools?.["containerimage.config.digest"]).toBe(local.imageId);
    expect(metadata.tools).not.toHaveProperty("containerimage.digest");
  });

  it("replaces a file and leaves no temporary file", async () => {
    const file = path.join(dir, "meta.json");
    await fs.writeFile(file, "old");
    await writeMetadataFile(file, result);
    const written = JSON.parse(await fs.readFile(file, "utf8")) as Record<string, unknown>;
    expect(written).toEqual(JSON.parse(JSON.stringify(metadataOf(result))));
    expect(await fs.readdir(dir)).toEqual(["meta.json"]);
  });

  it("resolves a relative path against cwd", async () => {
    expect(await checkMetadataPath("meta.json", dir)).toBe(path.join(dir, "meta.json"));
  });

  it("follows a symbolic link to its target", async () => {
    const target = path.join(dir, "target.json");
    await fs.writeFile(target, "{}");
    await fs.symlink(target, path.join(dir, "link.json"));
    expect(await checkMetadataPath("link.json", dir)).toBe(await fs.realpath(target));
  });

  it("follows a dangling link into an existing directory", async () => {
    await fs.symlink(path.join(dir, "new.json"), path.join(dir, "link.json"));

    expect(await checkMetadataPath("link.json", dir)).toBe(path.join(dir, "new.json"));
  });

  it("rejects a symbolic link loop", async () => {
    await fs.symlink(path.join(dir, "b.json"), path.join(dir, "a.json"));
    await fs.symlink(path.join(dir, "a.json"), path.join(dir, "b.json"));

    await expect(checkMetadataPath("a.json", dir)).rejects.toThrow(/more than 40 symbolic links/);
  });

  const invalid: Array<[string, (dir: string) => string | Promise<string>, RegExp]> = [
    ["empty path", () => "", /the path is empty/],
    ["missing directory", () => "missing/meta.json", /directory .*missing does not exist/],
    [
      "a dangling symbolic link",
      async (dir) => {
        await fs.symlink(path.join(dir, "missing", "x.json"), path.join(dir, "dangling.json"));
        return "dangling.json";
      },
      /directory .*missing does not exist/,
    ],
    [
      "a directory",
      async (dir) => {
        await fs.mkdir(path.join(dir, "sub"));
        return "sub";
      },
      /it is a directory/,
    ],
    [
      "a parent that is a file",
      async (dir) => {
        await fs.writeFile(path.join(dir, "file"), "");
        return "file/meta.json";
      },
      /file is not a directory/,
    ],
  ];

  it.each(invalid)("rejects %s", async (_, makePath, message) => {
    const file = await makePath(dir);
    const check = checkMetadataPath(file, dir);
    await expect(check).rejects.toThrow(UsageError);
    await expect(checkMetadataPath(file, dir)).rejects.toThrow(message);
  });
});
