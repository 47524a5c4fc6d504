import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NotFoundError } from "../../src/errors.js";
import { LocalIndex } from "../../src/index-store/local.js";

let home: string;

beforeEach(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-index-"));
});

afterEach(async () => {
  await fs.rm(home, { recursive: true, force: true });
});

const digestA = `sha256:${"a".repeat(64)}`;
const digestB = `sha256:${"b".repeat(64)}`;

describe("LocalIndex", () => {
  it("resolves a published tag", async () => {
    const index = new LocalIndex(home);
    await index.publish(
      { name: "app", tag: "latest" },
      { reference: `r@${digestA}`, digest: digestA, action: "build" },
    );
    const record = await index.resolve({ name: "app", tag: "latest" });
    expect(record.reference).toBe(`r@${digestA}`);
    expect(record.digest).toBe(digestA);
    expect(record.action).toBe("build");
  });

  it("moves one tag and keeps another", async () => {
    const index = new LocalIndex(home);
    await index.publish(
      { name: "app", tag: "v1" },
      { reference: digestA, digest: digestA, action: "build" },
    );
    await index.publish(
      { name: "app", tag: "latest" },
      { reference: digestA, digest: digestA, action: "build" },
    );
    await index.publish(
      { name: "app", tag: "latest" },
      { reference: digestB, digest: digestB, action: "build" },
    );
    expect((await index.resolve({ name: "app", tag: "v1" })).digest).toBe(digestA);
    expect((await index.resolve({ name: "app", tag: "latest" })).digest).toBe(digestB);
    const tags = await index.tags("app");
    expect(tags.map((record) => record.tag)).toEqual(["latest", "v1"]);
  });

  it("keeps a history line per publish", async () => {
    const index = new LocalIndex(home);
    await index.publish(
      { name: "team/app", tag: "latest" },
      { reference: digestA, digest: digestA, action: "build" },
    );
    await index.publish(
      { name: "team/app", tag: "latest" },
      { reference: digestB, digest: digestB, action: "publish" },
    );
    const history = await fs.readFile(
      path.join(home, "index", "team/app", "_history", "latest.jsonl"),
      "utf8",
    );
    expect(
      history
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line).digest),
    ).toEqual([digestA, digestB]);
  });

  it("throws NotFoundError for an unknown name", async () => {
    const index = new LocalIndex(home);
    await expect(index.resolve({ name: "nope", tag: "latest" })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(index.tags("nope")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("lists existing tags when a tag is missing", async () => {
    const index = new LocalIndex(home);
    await index.publish(
      { name: "app", tag: "v1" },
      { reference: digestA, digest: digestA, action: "build" },
    );
    await expect(index.resolve({ name: "app", tag: "v2" })).rejects.toMatchObject({
      hint: expect.stringContaining("v1"),
    });
  });

  it("keeps a name and a same-named nested name apart", async () => {
    const index = new LocalIndex(home);
    await index.publish(
      { name: "a", tag: "latest" },
      { reference: digestA, digest: digestA, action: "build" },
    );
    await index.publish(
      { name: "a/latest.json", tag: "latest" },
      { reference: digestB, digest: digestB, action: "build" },
    );
    expect((await index.resolve({ name: "a", tag: "latest" })).digest).toBe(digestA);
    expect((await index.resolve({ name: "a/latest.json", tag: "latest" })).digest).toBe(digestB);
  });

  it("serialises concurrent publishes to one tag", async () => {
    const index = new LocalIndex(home);
    const digests = Array.from(
      { length: 20 },
      (_, i) => `sha256:${i.toString(16).padStart(64, "0")}`,
    );
    await Promise.all(
      digests.map((digest) =>
        index.publish(
          { name: "app", tag: "latest" },
          { reference: digest, digest, action: "build" },
        ),
      ),
    );
    const history = await fs.readFile(
      path.join(home, "index", "app", "_history", "latest.jsonl"),
      "utf8",
    );
    const lines = history
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line).digest as string);
    expect([...lines].sort()).toEqual([...digests].sort());
    expect(digests).toContain((await index.resolve({ name: "app", tag: "latest" })).digest);
  });
});
