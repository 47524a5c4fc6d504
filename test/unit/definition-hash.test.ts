import { chmod, mkdir, mkdtemp, rename, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { prepareImage } from "../../src/build/prepare.js";
import { Image } from "../../src/image/image.js";
import { LocalIndex } from "../../src/index-store/local.js";
import { parseNameRef } from "../../src/names.js";

let root: string;
let home: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-definition-"));
  home = join(root, ".home");
  await mkdir(home);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Definition {
  env?: Record<string, string>;
  ignore?: string[];
  fromName?: boolean;
}

/** Returns an image that adds the project's `app/` directory, relative to the config directory. */
function defineImage(definition: Definition = {}): Image {
  const base = definition.fromName ? Image.fromName("base") : Image.fromRegistry("busybox:latest");
  return base
    .env(definition.env ?? { MODE: "one" })
    .addLocalDir("app", "/app", { ignore: definition.ignore ?? [] })
    .addLocalFile("run.sh", "/run.sh");
}

async function hashOf(project: string, definition: Definition = {}): Promise<string> {
  const image = defineImage(definition);
  const prepared = await prepareImage("app", image, {
    baseDir: project,
    index: new LocalIndex(home),
  });
  return prepared.definitionHash;
}

/** Creates a project directory with the files, written in the order given. */
async function makeProject(name: string, files: ReadonlyArray<[string, string]>): Promise<string> {
  const project = join(root, name);
  for (const [path, content] of files) {
    await mkdir(join(project, path, ".."), { recursive: true });
    await writeFile(join(project, path), content);
  }
  return project;
}

const projectFiles: ReadonlyArray<[string, string]> = [
  ["run.sh", "echo run"],
  ["app/main.txt", "main"],
  ["app/debug.log", "log"],
  ["app/sub/data.txt", "data"],
  ["app/sub/deeper/more.txt", "more"],
];

async function publishBase(digestCharacter: string): Promise<void> {
  const imageId = `sha256:${digestCharacter.repeat(64)}`;
  await new LocalIndex(home).publish(parseNameRef("base"), {
    reference: imageId,
    digest: imageId,
    action: "publish",
  });
}

interface HashCase {
  name: string;
  /** Returns the hash before and after the change. */
  run: () => Promise<[string, string]>;
  changes: boolean;
}

const cases: HashCase[] = [
  {
    name: "file in added directory",
    changes: true,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      const before = await hashOf(project);
      await writeFile(join(project, "app/sub/deeper/more.txt"), "less");
      return [before, await hashOf(project)];
    },
  },
  {
    name: "ignore rule",
    changes: true,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      return [await hashOf(project), await hashOf(project, { ignore: ["*.log"] })];
    },
  },
  {
    name: "env value",
    changes: true,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      const before = await hashOf(project, { env: { MODE: "one" } });
      return [before, await hashOf(project, { env: { MODE: "two" } })];
    },
  },
  {
    name: "fromName base digest",
    changes: true,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      await publishBase("a");
      const before = await hashOf(project, { fromName: true });
      await publishBase("b");
      return [before, await hashOf(project, { fromName: true })];
    },
  },
  {
    name: "file mode",
    changes: true,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      await chmod(join(project, "run.sh"), 0o644);
      const before = await hashOf(project);
      await chmod(join(project, "run.sh"), 0o755);
      return [before, await hashOf(project)];
    },
  },
  {
    name: "mtime only",
    changes: false,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      const before = await hashOf(project);
      await utimes(join(project, "app/sub/data.txt"), new Date(1_000_000), new Date(2_000_000));
      await utimes(join(project, "run.sh"), new Date(3_000_000), new Date(4_000_000));
      return [before, await hashOf(project)];
    },
  },
  {
    name: "creation order",
    changes: false,
    run: async () => {
      const first = await makeProject("first", projectFiles);
      const second = await makeProject("second", [...projectFiles].reverse());
      return [await hashOf(first), await hashOf(second)];
    },
  },
  {
    name: "another cwd",
    changes: false,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      const previous = process.cwd();
      try {
        process.chdir(project);
        const before = await hashOf(project);
        process.chdir(tmpdir());
        return [before, await hashOf(project)];
      } finally {
        process.chdir(previous);
      }
    },
  },
  {
    name: "project moved",
    changes: false,
    run: async () => {
      const project = await makeProject("p", projectFiles);
      const before = await hashOf(project);
      const moved = join(root, "elsewhere", "deeper", "p");
      await mkdir(join(moved, ".."), { recursive: true });
      await rename(project, moved);
      return [before, await hashOf(moved)];
    },
  },
];

describe("definition hash", () => {
  test.each(cases)("$name", async ({ run, changes }) => {
    const [before, after] = await run();

    expect(before).toMatch(/^sha256:[0-9a-f]{64}$/);
    if (changes) expect(after).not.toBe(before);
    else expect(after).toBe(before);
  });
});
