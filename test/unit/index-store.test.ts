import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConflictError, NotFoundError, UsageError } from "../../src/errors.js";
import { LocalIndex, parseExpected } from "../../src/index-store/local.js";
import type { NewTagValue } from "../../src/index-store/types.js";

let home: string;
let index: LocalIndex;

beforeEach(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-index-"));
  index = new LocalIndex(home);
});

afterEach(async () => {
  await fs.rm(home, { recursive: true, force: true });
});

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;
const value = (n: number): NewTagValue => ({
  reference: `127.0.0.1:5000/app@${digest(n)}`,
  digest: digest(n),
  action: "build",
});
const app = { name: "app", tag: "latest" };

describe("LocalIndex publish and resolve", () => {
  it("resolves a published tag", async () => {
    await index.publish(app, value(1));
    const record = await index.resolve(app);
    expect(record.reference).toBe(`127.0.0.1:5000/app@${digest(1)}`);
    expect(record.digest).toBe(digest(1));
    expect(record.action).toBe("build");
    expect(record.host).toBe(os.hostname());
  });

  it("moves one tag and keeps another", async () => {
    await index.publish({ name: "app", tag: "v1" }, value(1));
    await index.publish(app, value(1));
    await index.publish(app, value(2));
    expect((await index.resolve({ name: "app", tag: "v1" })).digest).toBe(digest(1));
    expect((await index.resolve(app)).digest).toBe(digest(2));
    expect((await index.tags("app")).map((record) => record.tag)).toEqual(["latest", "v1"]);
  });

  it("throws NotFoundError for an unknown name", async () => {
    await expect(index.resolve({ name: "nope", tag: "latest" })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    await expect(index.tags("nope")).rejects.toBeInstanceOf(NotFoundError);
    await expect(index.history(app)).rejects.toBeInstanceOf(NotFoundError);
  });

  it("lists existing tags when a tag is missing", async () => {
    await index.publish({ name: "app", tag: "v1" }, value(1));
    await expect(index.resolve({ name: "app", tag: "v2" })).rejects.toMatchObject({
      hint: expect.stringContaining("v1"),
    });
  });

  it("keeps a name and a nested name apart", async () => {
    await index.publish({ name: "a", tag: "latest" }, value(1));
    await index.publish({ name: "a/latest.log", tag: "latest" }, value(2));
    expect((await index.resolve({ name: "a", tag: "latest" })).digest).toBe(digest(1));
    expect((await index.resolve({ name: "a/latest.log", tag: "latest" })).digest).toBe(digest(2));
  });

  it("resolves from the tail of a long log", async () => {
    for (let n = 1; n <= 400; n++) await index.publish(app, value(n));
    expect((await index.resolve(app)).digest).toBe(digest(400));
    expect(await index.history(app)).toHaveLength(400);
  });

  it("skips a partial line left by an interrupted write", async () => {
    await index.publish(app, value(1));
    const file = path.join(home, "index", "app", "_tags", "latest.log");
    await fs.appendFile(file, '{"id":"cut","action":"build","ref');
    expect((await index.resolve(app)).digest).toBe(digest(1));
    await index.publish(app, value(2));
    expect((await index.resolve(app)).digest).toBe(digest(2));
    expect((await index.history(app)).map((record) => record.digest)).toEqual([
      digest(2),
      digest(1),
    ]);
  });
});

describe("LocalIndex history", () => {
  it("lists every value newest first", async () => {
    await index.publish(app, value(1));
    await index.publish(app, { ...value(2), action: "publish" });
    const history = await index.history({ name: "app", tag: "latest" });
    expect(history.map((record) => [record.digest, record.action])).toEqual([
      [digest(2), "publish"],
      [digest(1), "build"],
    ]);
  });

  it("records concurrent publishes exactly once", async () => {
    const digests = Array.from({ length: 32 }, (_, n) => value(n + 1));
    await Promise.all(digests.map((next) => index.publish(app, next)));
    const history = await index.history(app);
    expect(history.map((record) => record.digest).sort()).toEqual(
      digests.map((next) => next.digest).sort(),
    );
    expect((await index.resolve(app)).digest).toBe(history[0]!.digest);
  });
});

describe("LocalIndex compare-and-swap", () => {
  it("publishes when the expected digest matches", async () => {
    await index.publish(app, value(1));
    await index.publish(app, value(2), digest(1));
    expect((await index.resolve(app)).digest).toBe(digest(2));
  });

  it("rejects a stale expected digest and changes nothing", async () => {
    await index.publish(app, value(1));
    await index.publish(app, value(2));
    const error = await index.publish(app, value(3), digest(1)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).exitCode).toBe(4);
    expect((error as ConflictError).message).toContain(digest(2));
    expect((await index.resolve(app)).digest).toBe(digest(2));
    expect(await index.history(app)).toHaveLength(2);
  });

  it("publishes a new tag only when none is expected", async () => {
    await index.publish(app, value(1), null);
    const error: unknown = await index.publish(app, value(2), null).catch((caught) => caught);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).message).toBe(
      `app:latest is already set to ${digest(1)}, and --expect none requires it to be unset; nothing changed`,
    );
    expect((await index.resolve(app)).digest).toBe(digest(1));
  });

  it("lets one of many racing writers win", async () => {
    await index.publish(app, value(1));
    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, n) => index.publish(app, value(100 + n), digest(1))),
    );
    const won = results.filter((result) => result.status === "fulfilled");
    expect(won).toHaveLength(1);
    const winner = (won[0] as PromiseFulfilledResult<{ digest: string }>).value.digest;
    expect((await index.resolve(app)).digest).toBe(winner);
    expect(await index.history(app)).toHaveLength(2);
  });

  it.each([
    ["none", null],
    [digest(5), digest(5)],
    [undefined, undefined],
  ])("parses --expect %s", (input, expected) => {
    expect(parseExpected(input)).toBe(expected);
  });

  it.each(["", "latest", "sha256:abc", `SHA256:${"a".repeat(64)}`])(
    "rejects --expect %j",
    (input) => {
      expect(() => parseExpected(input)).toThrow(UsageError);
    },
  );
});

describe("LocalIndex rollback", () => {
  it("goes back one value at a time, like undo", async () => {
    for (const n of [1, 2, 3]) await index.publish(app, value(n));
    expect((await index.rollback(app)).digest).toBe(digest(2));
    expect((await index.rollback(app)).digest).toBe(digest(1));
    await expect(index.rollback(app)).rejects.toBeInstanceOf(NotFoundError);
    expect((await index.resolve(app)).digest).toBe(digest(1));
  });

  it("records rollbacks in history", async () => {
    await index.publish(app, value(1));
    await index.publish(app, value(2));
    const record = await index.rollback(app);
    expect(record.action).toBe("rollback");
    const history = await index.history(app);
    expect(history.map((entry) => [entry.digest, entry.action])).toEqual([
      [digest(1), "rollback"],
      [digest(2), "build"],
      [digest(1), "build"],
    ]);
  });

  it("goes to a chosen digest with --to", async () => {
    for (const n of [1, 2, 3]) await index.publish(app, value(n));
    const record = await index.rollback(app, { to: digest(1) });
    expect(record.reference).toBe(value(1).reference);
    expect((await index.resolve(app)).digest).toBe(digest(1));
  });

  it("rejects a digest the tag never had", async () => {
    await index.publish(app, value(1));
    await expect(index.rollback(app, { to: digest(9) })).rejects.toBeInstanceOf(NotFoundError);
  });

  it("honours --expect", async () => {
    await index.publish(app, value(1));
    await index.publish(app, value(2));
    await expect(index.rollback(app, { expect: digest(1) })).rejects.toBeInstanceOf(ConflictError);
    expect((await index.resolve(app)).digest).toBe(digest(2));
    expect((await index.rollback(app, { expect: digest(2) })).digest).toBe(digest(1));
  });

  it("publishes after a rollback and rolls that back", async () => {
    for (const n of [1, 2]) await index.publish(app, value(n));
    await index.rollback(app);
    await index.publish(app, value(3));
    expect((await index.rollback(app)).digest).toBe(digest(1));
  });
});

describe("LocalIndex untag and names", () => {
  it("removes a tag and keeps its history", async () => {
    await index.publish(app, value(1));
    await index.publish({ name: "app", tag: "v1" }, value(1));
    const removed = await index.untag(app);
    expect(removed.digest).toBe(digest(1));
    await expect(index.resolve(app)).rejects.toBeInstanceOf(NotFoundError);
    expect((await index.tags("app")).map((record) => record.tag)).toEqual(["v1"]);
    expect((await index.history(app)).map((record) => record.action)).toEqual(["untag", "build"]);
  });

  it("rolls back an untag", async () => {
    await index.publish(app, value(1));
    await index.untag(app);
    expect((await index.rollback(app)).digest).toBe(digest(1));
  });

  it("throws NotFoundError when untagging a missing tag", async () => {
    await expect(index.untag(app)).rejects.toBeInstanceOf(NotFoundError);
  });

  it("lists names with a prefix", async () => {
    await index.publish({ name: "team/a", tag: "latest" }, value(1));
    await index.publish({ name: "team/b", tag: "v1" }, value(2));
    await index.publish({ name: "team", tag: "latest" }, value(3));
    await index.publish({ name: "other", tag: "latest" }, value(4));
    expect((await index.names()).map((listing) => listing.name)).toEqual([
      "other",
      "team",
      "team/a",
      "team/b",
    ]);
    const team = await index.names("team/");
    expect(team.map((listing) => [listing.name, listing.tags.map((tag) => tag.tag)])).toEqual([
      ["team/a", ["latest"]],
      ["team/b", ["v1"]],
    ]);
  });

  it("leaves untagged names out of the listing", async () => {
    await index.publish(app, value(1));
    await index.untag(app);
    expect(await index.names()).toEqual([]);
  });
});

describe("LocalIndex file system errors", () => {
  it("names the index when MODAL_IMAGE_HOME is a file", async () => {
    const file = path.join(home, "not-a-dir");
    await fs.writeFile(file, "x");
    const broken = new LocalIndex(file);
    await expect(broken.publish(app, value(1))).rejects.toMatchObject({
      exitCode: 1,
      message: expect.stringContaining("ENOTDIR"),
      hint: expect.stringContaining("MODAL_IMAGE_HOME"),
    });
    await expect(broken.resolve(app)).rejects.toMatchObject({ exitCode: 1 });
  });

  it("skips entries with fields of the wrong type", async () => {
    await index.publish(app, value(1));
    const file = path.join(home, "index", "app", "_tags", "latest.log");
    await fs.appendFile(
      file,
      '\n{"id":"x","action":"build","at":"t","reference":5,"digest":"d"}\n',
    );
    expect((await index.resolve(app)).digest).toBe(digest(1));
  });
});
