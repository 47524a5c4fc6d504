import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalIndex } from "../../src/index-store/local.js";
import { createProject, type TestProject } from "../helpers/cli.js";

// These commands read and write only the name index, so no daemon is needed: the test seeds
// source names directly and publishes from them.
let project: TestProject;
const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;
const reference = (n: number) => `127.0.0.1:5000/app@${digest(n)}`;

beforeAll(async () => {
  project = await createProject("modal-image-names-");
  const index = new LocalIndex(project.home);
  for (const n of [1, 2, 3]) {
    await index.publish(
      { name: `source${n}`, tag: "latest" },
      { reference: reference(n), digest: digest(n), action: "build" },
    );
  }
});

afterAll(async () => {
  await project.cleanup();
});

describe("history, rollback, untag and names", () => {
  it("publishes three values", async () => {
    for (const n of [1, 2, 3]) {
      const result = await project.cli(["publish", `source${n}`, "team/app"]);
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(`${reference(n)}\n`);
    }
  });

  it("lists history newest first", async () => {
    const text = await project.cli(["history", "team/app"]);
    expect(text.exitCode).toBe(0);
    const rows = text.stdout
      .trim()
      .split("\n")
      .map((line) => line.split(/\s+/));
    expect(rows.map((row) => [row[1], row[2]])).toEqual([
      ["publish", digest(3)],
      ["publish", digest(2)],
      ["publish", digest(1)],
    ]);
    expect(rows[0]?.[4]).toBe(reference(3));

    const json = JSON.parse((await project.cli(["history", "team/app:latest", "--json"])).stdout);
    expect(json.name).toBe("team/app");
    expect(json.tag).toBe("latest");
    expect(json.history).toHaveLength(3);
  });

  it("rejects a stale --expect with exit 4", async () => {
    const result = await project.cli(["publish", "source1", "team/app", "--expect", digest(2)]);
    expect(result.exitCode).toBe(4);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(digest(3));
    expect((await project.cli(["resolve", "team/app"])).stdout).toBe(`${reference(3)}\n`);
  });

  it.each([
    [["publish", "source1", "team/app", "--expect", "latest"], /invalid --expect value "latest"/],
    [["rollback", "team/app", "--to", "sha256:abc"], /invalid --to value/],
    [["untag", "team/app:_x"], /reserved/],
  ])("rejects %j with exit 2", async (args, pattern) => {
    const result = await project.cli(args);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(pattern);
  });

  it("rolls back one value, then to a chosen digest", async () => {
    const back = await project.cli(["rollback", "team/app", "--expect", digest(3)]);
    expect(back.exitCode).toBe(0);
    expect(back.stdout).toBe(`${reference(2)}\n`);
    const to = await project.cli(["rollback", "team/app", "--to", digest(3)]);
    expect(to.stdout).toBe(`${reference(3)}\n`);
    const missing = await project.cli(["rollback", "team/app", "--to", digest(9)]);
    expect(missing.exitCode).toBe(3);
    const history = JSON.parse((await project.cli(["history", "team/app", "--json"])).stdout) as {
      history: Array<{ action: string }>;
    };
    expect(history.history.map((entry) => entry.action)).toEqual([
      "rollback",
      "rollback",
      "publish",
      "publish",
      "publish",
    ]);
  });

  it("untags and lists names", async () => {
    await project.cli(["publish", "source1", "team/app:v1"]);
    const untag = await project.cli(["untag", "team/app:latest"]);
    expect(untag.exitCode).toBe(0);
    expect(untag.stdout).toBe(`${reference(3)}\n`);
    expect((await project.cli(["resolve", "team/app"])).exitCode).toBe(3);

    const names = await project.cli(["names", "--prefix", "team/"]);
    expect(names.stdout).toBe("team/app  v1\n");
    const all = JSON.parse((await project.cli(["names", "--json"])).stdout) as {
      names: Array<{ name: string }>;
    };
    expect(all.names.map((listing) => listing.name)).toEqual([
      "source1",
      "source2",
      "source3",
      "team/app",
    ]);
  });
});
