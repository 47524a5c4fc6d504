import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { removeImages } from "../helpers/docker.js";
import { openRegistry } from "../helpers/stack.js";

/** A DOCKER_HOST where nothing listens, which proves that a command contacted no daemon. */
const deadDaemon = { DOCKER_HOST: "unix:///nonexistent/modal-image-test.sock" };

interface JsonLine {
  type: string;
  time: string;
  [field: string]: unknown;
}

/** Parses every stderr line as JSON; fails the test on the first line that is not. */
function jsonLines(stderr: string): JsonLine[] {
  return stderr
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as JsonLine);
}

interface BuildJson {
  images: Array<{ image: string; reference: string; imageId: string; digest: string }>;
}

describe.skipIf(skipIntegration)("output for machines", () => {
  let project: TestProject;
  const name = uniqueName("output");
  const broken = `${name}-broken`;
  const repository = `${openRegistry}/${name}`;

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(
        `{
          ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest").runCommands("echo built-line"),
          ${JSON.stringify(broken)}: Image.fromRegistry("busybox:latest").runCommands("echo broken-line; exit 3"),
        }`,
        openRegistry,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(repository, `${openRegistry}/${broken}`);
    await project.cleanup();
  });

  it("writes every progress event as JSON", async () => {
    const result = await project.cli([
      "build",
      name,
      "--force",
      "--no-cache",
      "--progress",
      "json",
      "--json",
    ]);
    expect(result.exitCode).toBe(0);
    const built = JSON.parse(result.stdout) as BuildJson;
    const events = jsonLines(result.stderr);
    for (const event of events) expect(Date.parse(event.time)).not.toBeNaN();

    const types = new Set(events.map((event) => event.type));
    expect(types).toEqual(new Set(["phase", "step", "output", "status", "done"]));
    expect(events).toContainEqual(expect.objectContaining({ type: "phase", phase: "build" }));
    expect(events).toContainEqual(
      expect.objectContaining({
        type: "step",
        image: name,
        index: 1,
        instruction: "FROM busybox:latest",
      }),
    );
    expect(events).toContainEqual(expect.objectContaining({ type: "output", text: "built-line" }));
    expect(events).toContainEqual(expect.objectContaining({ type: "status", operation: "push" }));

    expect(events.at(-1)).toMatchObject({
      type: "done",
      image: name,
      reference: built.images[0]?.reference,
    });
  });

  it("writes a failure as the last JSON line", async () => {
    const result = await project.cli(["build", broken, "--progress", "json"]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toBe("");
    const events = jsonLines(result.stderr);
    expect(events).toContainEqual(expect.objectContaining({ type: "output", text: "broken-line" }));
    expect(events.at(-1)).toMatchObject({ type: "error", exitCode: 1 });
    expect(events.at(-1)?.message).toMatch(/build failed at step 2\/3/);
  });

  it("shows the build log with --progress plain", async () => {
    const plain = await project.cli([
      "build",
      name,
      "--force",
      "--no-cache",
      "--progress",
      "plain",
    ]);
    expect(plain.exitCode).toBe(0);
    expect(plain.stderr).toMatch(/step 2\/3: RUN/);
    expect(plain.stderr).toMatch(/^built-line$/m);
  });

  it("shows only steps off a terminal by default", async () => {
    const steps = await project.cli(["build", name, "--force", "--no-cache"]);
    expect(steps.exitCode).toBe(0);
    expect(steps.stderr).toMatch(/step 2\/3: RUN/);
    expect(steps.stderr).not.toMatch(/^built-line$/m);
  });

  it("prints only the reference with --quiet", async () => {
    const result = await project.cli(["build", name, "--quiet"]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toBe("");
    expect(result.stdout).toMatch(new RegExp(`^${repository}@sha256:[0-9a-f]{64}\\n$`));
  });

  it("rejects an invalid --progress before the daemon", async () => {
    const result = await project.cli(["build", name, "--progress", "fancy", "--json"], {
      env: deadDaemon,
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('invalid --progress value "fancy"');
    expect(result.stderr).toContain("auto, plain, json");
    const error = (JSON.parse(result.stdout) as { error: { exitCode: number } }).error;
    expect(error.exitCode).toBe(2);
  });

  it("rejects an invalid MODAL_IMAGE_PROGRESS", async () => {
    const result = await project.cli(["build", name], {
      env: { ...deadDaemon, MODAL_IMAGE_PROGRESS: "rawjson" },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('invalid MODAL_IMAGE_PROGRESS "rawjson"');
  });

  it("rejects --quiet with --progress json", async () => {
    const result = await project.cli(["build", name, "-q", "--progress", "json"], {
      env: deadDaemon,
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--quiet conflicts with --progress json");
  });

  it("writes the metadata file after a build", async () => {
    await fs.mkdir(path.join(project.dir, "out"));
    const result = await project.cli([
      "build",
      name,
      "--publish",
      name,
      "--json",
      "--metadata-file",
      "out/meta.json",
    ]);
    expect(result.exitCode).toBe(0);
    const built = (JSON.parse(result.stdout) as BuildJson).images[0]!;
    const text = await fs.readFile(path.join(project.dir, "out", "meta.json"), "utf8");
    const metadata = JSON.parse(text) as Record<string, Record<string, unknown>>;
    expect(Object.keys(metadata)).toEqual([name]);
    expect(metadata[name]).toEqual({
      ...built,
      "containerimage.config.digest": built.imageId,
      "containerimage.digest": built.digest,
    });
    expect(metadata[name]?.published).toEqual([`${name}:latest`]);
    expect(await fs.readdir(path.join(project.dir, "out"))).toEqual(["meta.json"]);
  });

  it("leaves the metadata file unchanged on failure", async () => {
    const file = await project.write("previous/meta.json", "previous content\n");
    const result = await project.cli(["build", broken, "--metadata-file", file]);
    expect(result.exitCode).toBe(1);
    expect(await fs.readFile(file, "utf8")).toBe("previous content\n");
    expect(await fs.readdir(path.dirname(file))).toEqual(["meta.json"]);
  });

  it("rejects a metadata path in a missing directory", async () => {
    const result = await project.cli(["build", name, "--metadata-file", "missing/meta.json"], {
      env: deadDaemon,
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('invalid --metadata-file "missing/meta.json"');
    expect(result.stderr).toContain("mkdir -p");
    await expect(fs.stat(path.join(project.dir, "missing"))).rejects.toThrow(/ENOENT/);
  });

  it("prints only tags and names with -q", async () => {
    const tags = await project.cli(["tags", name, "-q"]);
    expect(tags.exitCode).toBe(0);
    expect(tags.stdout).toBe("latest\n");
    const names = await project.cli(["names", "--prefix", name, "--quiet"]);
    expect(names.exitCode).toBe(0);
    expect(names.stdout).toBe(`${name}\n`);
  });

  it("reports pull events of run as JSON", async () => {
    await removeImages(repository);
    const result = await project.cli(["run", name, "--progress", "json", "--", "true"]);
    expect(result.exitCode).toBe(0);
    const events = jsonLines(result.stderr);
    expect(events[0]).toMatchObject({ type: "phase", phase: "pull", image: name });
    expect(events).toContainEqual(expect.objectContaining({ type: "status", operation: "pull" }));
  });
});
