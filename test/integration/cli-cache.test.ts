import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { docker, removeImages } from "../helpers/docker.js";
import { manifestDigest } from "../helpers/registry.js";
import { openRegistry } from "../helpers/stack.js";

interface BuiltImageJson {
  image: string;
  imageId: string;
  reference: string;
  digest: string;
  definitionHash: string;
  published: string[];
  cached: boolean;
}

/** Returns a config whose RUN line is unique to this test run, so no earlier image matches. */
function cacheConfig(name: string, marker: string, mode: string, registry?: string): string {
  return configText(
    `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
      .env({ MODE: ${JSON.stringify(mode)} })
      .runCommands("echo ${marker} > /marker")
      .cmd(["cat", "/marker"]) }`,
    registry,
  );
}

async function buildJson(
  project: TestProject,
  args: readonly string[] = [],
  env?: Record<string, string>,
): Promise<{ image: BuiltImageJson; stderr: string }> {
  const result = await project.cli(["build", "--json", ...args], env ? { env } : {});
  expect(result.stderr).not.toContain("error:");
  expect(result.exitCode).toBe(0);
  const body = JSON.parse(result.stdout) as { images: BuiltImageJson[] };
  expect(body.images).toHaveLength(1);
  return { image: body.images[0]!, stderr: result.stderr };
}

/** Lists the IDs of local images labelled with the definition hash. */
async function imagesWithDefinition(definitionHash: string): Promise<string[]> {
  const output = await docker([
    "image",
    "ls",
    "-q",
    "--no-trunc",
    "--filter",
    `label=dev.modal-image.definition=${definitionHash}`,
  ]);
  return [...new Set(output.split("\n").filter(Boolean))];
}

async function createdAt(imageId: string): Promise<string> {
  return docker(["image", "inspect", "--format", "{{.Created}}", imageId]);
}

describe.skipIf(skipIntegration)("build cache without a registry", () => {
  let project: TestProject;
  const name = uniqueName("cache-local");
  const marker = `local-${Math.random().toString(36).slice(2)}`;
  let first: BuiltImageJson;

  beforeAll(async () => {
    project = await createProject();
    await project.write("image.config.ts", cacheConfig(name, marker, "one"));
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("builds the first time", async () => {
    const result = await buildJson(project);
    first = result.image;

    expect(first.cached).toBe(false);
    expect(first.reference).toBe(first.imageId);
    expect(await imagesWithDefinition(first.definitionHash)).toEqual([first.imageId]);
  });

  it("reuses the image the second time", async () => {
    const createdBefore = await createdAt(first.imageId);

    const { image, stderr } = await buildJson(project);

    expect(image.cached).toBe(true);
    expect(image.reference).toBe(first.reference);
    expect(image.definitionHash).toBe(first.definitionHash);
    expect(await createdAt(first.imageId)).toBe(createdBefore);
    expect(await imagesWithDefinition(first.definitionHash)).toEqual([first.imageId]);
    expect(stderr).toContain(`${name}: cached`);
    expect(stderr).not.toContain(`${name}: build`);
  });

  it("prints cached in text mode", async () => {
    const result = await project.cli(["build"]);

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(`${first.reference}\n`);
    expect(result.stderr).toContain(`${name}: cached`);
  });

  it("rebuilds with --force", async () => {
    const { image, stderr } = await buildJson(project, ["--force"]);

    expect(image.cached).toBe(false);
    expect(image.definitionHash).toBe(first.definitionHash);
    expect(stderr).toContain(`${name}: build`);
  });

  it("rebuilds with --no-cache", async () => {
    const { image, stderr } = await buildJson(project, ["--no-cache"]);

    expect(image.cached).toBe(false);
    expect(image.definitionHash).toBe(first.definitionHash);
    expect(stderr).toContain(`${name}: build`);
  });

  it("rebuilds after an env change", async () => {
    await project.write("image.config.ts", cacheConfig(name, marker, "two"));

    const { image, stderr } = await buildJson(project);

    expect(image.cached).toBe(false);
    expect(image.definitionHash).not.toBe(first.definitionHash);
    expect(image.imageId).not.toBe(first.imageId);
    expect(stderr).toContain(`${name}: build`);
  });

  it("publishes a cached image", async () => {
    const { image } = await buildJson(project, ["--publish", `${name}:cached`]);

    expect(image.cached).toBe(true);
    expect(image.published).toEqual([`${name}:cached`]);
    const resolved = await project.cli(["resolve", `${name}:cached`]);
    expect(resolved.stdout).toBe(`${image.reference}\n`);
  });

  it("pushes a local image to a new registry without building", async () => {
    const repository = `${openRegistry}/${name}`;
    try {
      const { image, stderr } = await buildJson(project, ["--registry", openRegistry]);

      expect(image.cached).toBe(true);
      expect(image.reference).toMatch(new RegExp(`^${repository}@sha256:[a-f0-9]{64}$`));
      expect(stderr).toContain(`${name}: push`);
      expect(stderr).not.toContain(`${name}: build`);
      expect(await manifestDigest(openRegistry, name, image.digest)).toBe(image.digest);
    } finally {
      await removeImages(repository);
    }
  });

  it("rejects an invalid --parallel", async () => {
    const result = await project.cli(["build", "--parallel", "0"]);

    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`invalid --parallel value "0"`);
  });
});

describe.skipIf(skipIntegration)("build cache with a registry", () => {
  let project: TestProject;
  let otherMachine: TestProject;
  const name = uniqueName("cache-registry");
  const repository = `${openRegistry}/${name}`;
  const marker = `registry-${Math.random().toString(36).slice(2)}`;
  let first: BuiltImageJson;

  beforeAll(async () => {
    project = await createProject();
    otherMachine = await createProject();
    const config = cacheConfig(name, marker, "one", openRegistry);
    await project.write("image.config.ts", config);
    await otherMachine.write("image.config.ts", config);
  });

  afterAll(async () => {
    await removeImages(repository);
    await project.cleanup();
    await otherMachine.cleanup();
  });

  it("builds and pushes the first time", async () => {
    const result = await buildJson(project, ["--publish", name]);
    first = result.image;

    expect(first.cached).toBe(false);
    expect(first.reference).toBe(`${repository}@${first.digest}`);
  });

  it("reuses the pushed image without building", async () => {
    const { image, stderr } = await buildJson(project);

    expect(image.cached).toBe(true);
    expect(image.reference).toBe(first.reference);
    expect(stderr).not.toContain(`${name}: build`);
    expect(stderr).not.toContain(`${name}: push`);
  });

  it("reuses the registry's image on another machine", async () => {
    await removeImages(repository);
    expect(await imagesWithDefinition(first.definitionHash)).toEqual([]);

    const { image, stderr } = await buildJson(otherMachine);

    expect(image.cached).toBe(true);
    expect(image.reference).toBe(first.reference);
    expect(image.imageId).toBe(first.imageId);
    expect(stderr).toContain(`${name}: cached`);
    expect(stderr).not.toContain(`${name}: build`);
    expect(await imagesWithDefinition(first.definitionHash)).toEqual([]);
  });

  it("moves a name when cached", async () => {
    const { image } = await buildJson(otherMachine, ["--publish", `${name}:v2`]);

    expect(image.cached).toBe(true);
    expect(image.published).toEqual([`${name}:v2`]);
    const resolved = await otherMachine.cli(["resolve", `${name}:v2`]);
    expect(resolved.stdout).toBe(`${first.reference}\n`);
  });
});

describe.skipIf(skipIntegration)("build --parallel", () => {
  let project: TestProject;
  const names = [uniqueName("parallel-b"), uniqueName("parallel-a"), uniqueName("parallel-c")];
  const marker = `parallel-${Math.random().toString(36).slice(2)}`;

  beforeAll(async () => {
    project = await createProject();
    const images = names.map(
      (name, position) =>
        `${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
          .runCommands("echo ${marker}-${position} > /marker")`,
    );
    await project.write("image.config.ts", configText(`{ ${images.join(",\n")} }`));
  });

  afterAll(async () => {
    await removeImages(...names);
    await project.cleanup();
  });

  it("keeps results in config order", async () => {
    const result = await project.cli(["build", "--json", "--parallel", "3"]);

    expect(result.exitCode).toBe(0);
    const body = JSON.parse(result.stdout) as { images: BuiltImageJson[] };
    expect(body.images.map((image) => image.image)).toEqual(names);
    expect(body.images.map((image) => image.cached)).toEqual([false, false, false]);
    expect(new Set(body.images.map((image) => image.imageId)).size).toBe(3);
  });

  it("reports every image cached on the second run", async () => {
    const result = await project.cli(["build", "--json", "--parallel", "1"]);

    expect(result.exitCode).toBe(0);
    const body = JSON.parse(result.stdout) as { images: BuiltImageJson[] };
    expect(body.images.map((image) => image.cached)).toEqual([true, true, true]);
  });
});
