import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LocalIndex } from "../../src/index-store/local.js";
import { binPath, createProject, type TestProject } from "../helpers/cli.js";

// Real processes against one MODAL_IMAGE_HOME: no daemon is needed, because each publish
// copies the value of a source name that the test seeds in the index first.
let project: TestProject;

beforeEach(async () => {
  project = await createProject("modal-image-concurrency-");
});

afterEach(async () => {
  await project.cleanup();
});

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;
const reference = (n: number) => `127.0.0.1:5000/app@${digest(n)}`;

async function seedSources(count: number): Promise<void> {
  const index = new LocalIndex(project.home);
  for (let n = 1; n <= count; n++) {
    await index.publish(
      { name: `source${n}`, tag: "latest" },
      {
        reference: reference(n),
        digest: digest(n),
        action: "build",
      },
    );
  }
}

function cli(args: string[]) {
  return execa(binPath, args, {
    env: { MODAL_IMAGE_HOME: project.home, NO_COLOR: "1" },
    reject: false,
    stripFinalNewline: false,
    stdin: "ignore",
  });
}

describe("name index under concurrent processes", () => {
  it.each([1, 2, 3])(
    "keeps every one of 32 publishes to one tag, trial %i",
    { timeout: 120_000 },
    async () => {
      await seedSources(32);
      const results = await Promise.all(
        Array.from({ length: 32 }, (_, n) => cli(["publish", `source${n + 1}`, "app:latest"])),
      );
      for (const result of results) expect(result.stderr).toBe("");
      expect(results.map((result) => result.exitCode)).toEqual(Array(32).fill(0));

      const history = await cli(["history", "app:latest", "--json"]);
      const entries = (JSON.parse(String(history.stdout)) as { history: Array<{ digest: string }> })
        .history;
      expect(entries.map((entry) => entry.digest).sort()).toEqual(
        Array.from({ length: 32 }, (_, n) => digest(n + 1)).sort(),
      );
      const resolved = await cli(["resolve", "app:latest", "--json"]);
      expect((JSON.parse(String(resolved.stdout)) as { digest: string }).digest).toBe(
        entries[0]!.digest,
      );
    },
  );

  it("publishes 32 different tags at once", { timeout: 120_000 }, async () => {
    await seedSources(32);
    const results = await Promise.all(
      Array.from({ length: 32 }, (_, n) => cli(["publish", `source${n + 1}`, `app:t${n + 1}`])),
    );
    expect(results.map((result) => result.exitCode)).toEqual(Array(32).fill(0));
    const tags = await cli(["tags", "app", "--json"]);
    const listed = (
      JSON.parse(String(tags.stdout)) as { tags: Array<{ tag: string; digest: string }> }
    ).tags;
    expect(listed).toHaveLength(32);
    for (const entry of listed) expect(entry.digest).toBe(digest(Number(entry.tag.slice(1))));
  });

  it("lets readers see only whole values while publishers run", { timeout: 180_000 }, async () => {
    await seedSources(16);
    await cli(["publish", "source1", "app:latest"]);
    const valid = new Set(Array.from({ length: 16 }, (_, n) => `${reference(n + 1)}\n`));
    let publishing = true;
    const reader = async () => {
      const problems: string[] = [];
      while (publishing) {
        const resolved = await cli(["resolve", "app"]);
        if (resolved.exitCode !== 0 || !valid.has(String(resolved.stdout))) {
          problems.push(
            `resolve: ${resolved.exitCode} ${String(resolved.stdout)} ${String(resolved.stderr)}`,
          );
        }
        const tags = await cli(["tags", "app"]);
        if (
          tags.exitCode !== 0 ||
          !/^latest {2}sha256:[a-f0-9]{64} {2}\S+\n$/.test(String(tags.stdout))
        ) {
          problems.push(`tags: ${tags.exitCode} ${String(tags.stdout)} ${String(tags.stderr)}`);
        }
      }
      return problems;
    };
    const readers = [reader(), reader()];
    const publishers = await Promise.all(
      Array.from({ length: 16 }, (_, n) => cli(["publish", `source${n + 1}`, "app:latest"])),
    );
    publishing = false;
    expect((await Promise.all(readers)).flat()).toEqual([]);
    expect(publishers.map((result) => result.exitCode)).toEqual(Array(16).fill(0));
  });

  it("survives publishers killed with SIGKILL", { timeout: 300_000 }, async () => {
    await seedSources(2);
    await cli(["publish", "source1", "app:latest"]);
    const trials = 40;
    for (let trial = 0; trial < trials; trial++) {
      const before = String((await cli(["resolve", "app"])).stdout);
      const next = before === `${reference(1)}\n` ? "source2" : "source1";
      const child = cli(["publish", next, "app:latest"]);
      // Spread the kills over start-up, config-free loading and the write itself.
      await new Promise((resolve) => setTimeout(resolve, (trial * 37) % 400));
      child.kill("SIGKILL");
      await child;
      const after = await cli(["resolve", "app"]);
      expect(after.exitCode, `trial ${trial}`).toBe(0);
      expect([`${reference(1)}\n`, `${reference(2)}\n`], `trial ${trial}`).toContain(
        String(after.stdout),
      );
      const history = await cli(["history", "app", "--json"]);
      expect(history.exitCode, `trial ${trial}`).toBe(0);
      const newest = (
        JSON.parse(String(history.stdout)) as { history: Array<{ reference: string }> }
      ).history[0]!.reference;
      expect(`${newest}\n`, `trial ${trial}`).toBe(String(after.stdout));
    }
  });

  it("lets exactly one --expect publisher win a race", { timeout: 120_000 }, async () => {
    await seedSources(9);
    await cli(["publish", "source1", "app:latest"]);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, n) =>
        cli(["publish", `source${n + 2}`, "app:latest", "--expect", digest(1)]),
      ),
    );
    const codes = results.map((result) => result.exitCode).sort();
    expect(codes).toEqual([0, 4, 4, 4, 4, 4, 4, 4]);
    const history = await cli(["history", "app", "--json"]);
    expect((JSON.parse(String(history.stdout)) as { history: unknown[] }).history).toHaveLength(2);
  });
});
