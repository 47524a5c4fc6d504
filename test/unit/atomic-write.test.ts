import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomically } from "../../src/util/atomic-write.js";

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-atomic-"));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe("writeFileAtomically", () => {
  it("replaces file without leftovers", async () => {
    const file = path.join(dir, "out.json");
    await fs.writeFile(file, "old");
    await writeFileAtomically(file, "new", { sync: true });
    expect(await fs.readFile(file, "utf8")).toBe("new");
    expect(await fs.readdir(dir)).toEqual(["out.json"]);
  });

  it("racing writers leave one file", async () => {
    const file = path.join(dir, "out.json");
    const contents = Array.from({ length: 8 }, (_, i) => String(i).repeat(100_000));
    await Promise.all(contents.map((content) => writeFileAtomically(file, content)));
    expect(contents).toContain(await fs.readFile(file, "utf8"));
    expect(await fs.readdir(dir)).toEqual(["out.json"]);
  });

  it("failed rename removes temporary", async () => {
    const target = path.join(dir, "taken");
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, "child"), "x");
    await expect(writeFileAtomically(target, "new")).rejects.toMatchObject({
      code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/),
    });
    expect(await fs.readdir(dir)).toEqual(["taken"]);
  });
});
