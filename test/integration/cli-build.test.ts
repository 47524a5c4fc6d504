import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  binPath,
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { docker, imageConfig, removeImages } from "../helpers/docker.js";
import { listTags, manifestDigest } from "../helpers/registry.js";
import { openRegistry } from "../helpers/stack.js";

const pinnedRe = /^127\.0\.0\.1:5000\/(.+)@(sha256:[a-f0-9]{64})\n$/;

function appConfig(name: string, marker: string): string {
  return configText(
    `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
      .runCommands("echo ${marker} > /marker")
      .cmd(["cat", "/marker"]) }`,
    openRegistry,
  );
}

describe.skipIf(skipIntegration)("build --publish with a registry", () => {
  let project: TestProject;
  const name = uniqueName("app");
  const repository = `${openRegistry}/${name}`;

  beforeAll(async () => {
    project = await createProject();
    await project.write("image.config.ts", appConfig(name, "first"));
  });

  afterAll(async () => {
    await removeImages(repository);
    await project.cleanup();
  });

  it("builds, pushes and publishes latest", async () => {
    const result = await project.cli(["build", "--publish", name]);
    expect(result.stderr).not.toContain("error:");
    expect(result.exitCode).toBe(0);
    const match = pinnedRe.exec(result.stdout);
    expect(match?.[1]).toBe(name);
    expect(await manifestDigest(openRegistry, name, match![2]!)).toBe(match![2]);

    const resolved = await project.cli(["resolve", name]);
    expect(resolved.exitCode).toBe(0);
    expect(resolved.stdout).toBe(result.stdout);
  });

  it("resolves to a reference docker can run", async () => {
    const reference = (await project.cli(["resolve", name])).stdout.trim();
    expect(await docker(["run", "--rm", reference])).toBe("first");
  });

  it("lists latest with the registry's digest", async () => {
    const reference = (await project.cli(["resolve", `${name}:latest`])).stdout.trim();
    const digest = reference.split("@")[1];
    const tags = await project.cli(["tags", name]);
    expect(tags.exitCode).toBe(0);
    const rows = tags.stdout
      .trim()
      .split("\n")
      .map((line) => line.split(/\s+/));
    expect(rows).toHaveLength(1);
    expect(rows[0]?.[0]).toBe("latest");
    expect(rows[0]?.[1]).toBe(digest);
    expect(Date.parse(rows[0]![2]!)).not.toBeNaN();
  });

  it("moves latest and keeps v1 on the old digest", async () => {
    const before = (await project.cli(["resolve", name])).stdout;
    const v1 = await project.cli(["publish", name, `${name}:v1`]);
    expect(v1.exitCode).toBe(0);
    expect(v1.stdout).toBe(before);

    await project.write("image.config.ts", appConfig(name, "second"));
    const rebuilt = await project.cli(["build", "--publish", `${name}:latest`]);
    expect(rebuilt.exitCode).toBe(0);
    expect(rebuilt.stdout).not.toBe(before);

    expect((await project.cli(["resolve", name])).stdout).toBe(rebuilt.stdout);
    expect((await project.cli(["resolve", `${name}:v1`])).stdout).toBe(before);
    expect(await docker(["run", "--rm", rebuilt.stdout.trim()])).toBe("second");
    expect(await docker(["run", "--rm", before.trim()])).toBe("first");

    const tags = await project.cli(["tags", name, "--json"]);
    const body = JSON.parse(tags.stdout) as { tags: Array<{ tag: string; reference: string }> };
    expect(body.tags.map((record) => record.tag)).toEqual(["latest", "v1"]);
  });

  it("leaves names and registry tags unchanged when a RUN fails", async () => {
    const before = (await project.cli(["resolve", name])).stdout;
    const registryTags = await listTags(openRegistry, name);
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
          .runCommands("echo about to fail; echo on stderr >&2; exit 42") }`,
        openRegistry,
      ),
    );
    const failed = await project.cli(["build", "--publish", name]);
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toBe("");
    expect(failed.stderr).toContain("returned a non-zero code: 42");
    expect(failed.stderr).toContain("about to fail");
    expect(failed.stderr).toMatch(/step \d+\/\d+/);

    expect((await project.cli(["resolve", name])).stdout).toBe(before);
    expect(await listTags(openRegistry, name)).toEqual(registryTags);
    await project.write("image.config.ts", appConfig(name, "second"));
  });

  it("prints one JSON document with --json", async () => {
    const result = await project.cli(["build", "--json", "--publish", `${name}:json`]);
    expect(result.exitCode).toBe(0);
    const body = JSON.parse(result.stdout) as { images: Array<Record<string, unknown>> };
    expect(body.images).toHaveLength(1);
    expect(body.images[0]).toMatchObject({
      image: name,
      repository,
      published: [`${name}:json`],
      reference: expect.stringMatching(/@sha256:[a-f0-9]{64}$/),
      definitionHash: expect.stringMatching(/^sha256:[a-f0-9]{64}$/),
      imageId: expect.stringMatching(/^sha256:[a-f0-9]{64}$/),
    });
    const config = await imageConfig(body.images[0]!.reference as string);
    expect(config.Labels?.["dev.modal-image.definition"]).toBe(body.images[0]!.definitionHash);
  });

  it("runs a command from the name and returns its exit code", async () => {
    const result = await project.cli([
      "run",
      name,
      "--",
      "sh",
      "-c",
      "echo out; echo err >&2; exit 7",
    ]);
    expect(result.exitCode).toBe(7);
    expect(result.stdout).toBe("out\n");
    expect(result.stderr).toContain("err\n");
    expect(result.stderr).not.toContain("out");
  });

  it("runs the image's CMD by default", async () => {
    const result = await project.cli(["run", name]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("second\n");
  });

  it("forwards stdin with -i", async () => {
    const input = Array.from({ length: 20_000 }, (_, i) => `line ${i} é ✓ $(x) \\ "q"\n`).join("");
    const result = await project.cli(["run", "-i", name, "--", "cat"], { input });

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(input);
  });

  it("closes stdin without -i", async () => {
    const result = await project.cli(["run", name, "--", "cat"], { input: "not forwarded\n" });

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("");
  });

  it("ends when the container stops reading stdin", async () => {
    const input = "y\n".repeat(4_000_000);
    const result = await project.cli(["run", "-i", name, "--", "head", "-c", "4"], { input });

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe("y\ny\n");
  });

  it("leaves no container behind after run", async () => {
    const reference = (await project.cli(["resolve", name])).stdout.trim();
    await project.cli(["run", name, "--", "true"]);
    const containers = await docker(["ps", "-a", "-q", "--filter", `ancestor=${reference}`]);
    expect(containers).toBe("");
  });

  it("exits 3 for an unknown name", async () => {
    for (const args of [
      ["resolve", `${name}-missing`],
      ["tags", `${name}-missing`],
      ["run", `${name}:nope`],
      ["publish", `${name}-missing`, "x"],
    ]) {
      const result = await project.cli(args);
      expect(result.exitCode, args.join(" ")).toBe(3);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("not found");
    }
  });
});

describe.skipIf(skipIntegration)("build without a registry", () => {
  let project: TestProject;
  const name = uniqueName("local");

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest").env({ WHERE: "local" }) }`,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("publishes the local image ID", async () => {
    const result = await project.cli(["build", "--publish", name]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    const id = await docker(["image", "inspect", "--format", "{{.Id}}", result.stdout.trim()]);
    expect(id).toBe(result.stdout.trim());
    expect((await project.cli(["resolve", name])).stdout).toBe(result.stdout);
  });

  it("publishes an image ID as a new name", async () => {
    const id = (await project.cli(["resolve", name])).stdout.trim();
    const result = await project.cli(["publish", id, `${name}-copy:stable`]);
    expect(result.exitCode).toBe(0);
    expect((await project.cli(["resolve", `${name}-copy:stable`])).stdout.trim()).toBe(id);
  });

  it("exits 3 for an image ID the daemon lacks", async () => {
    const result = await project.cli(["publish", `sha256:${"0".repeat(64)}`, `${name}:x`]);
    expect(result.exitCode).toBe(3);
  });

  it("builds FROM a published name pinned to its digest", async () => {
    const base = (await project.cli(["resolve", name])).stdout.trim();
    const derived = `${name}-derived`;
    await project.write(
      "derived.config.ts",
      configText(
        `{ ${JSON.stringify(derived)}: Image.fromName(${JSON.stringify(name)}).runCommands("echo $WHERE > /where") }`,
      ),
    );
    const dockerfile = await project.cli(["dockerfile", derived, "-c", "derived.config.ts"]);
    expect(dockerfile.stdout.split("\n")[0]).toBe(`FROM ${base}`);
    const built = await project.cli(["build", "-c", "derived.config.ts"]);
    expect(built.stderr).not.toContain("error");
    expect(built.exitCode).toBe(0);
    expect(await docker(["run", "--rm", built.stdout.trim(), "cat", "/where"])).toBe("local");
    await removeImages(derived);
  });

  it("exits 3 when fromName names an unknown name", async () => {
    await project.write(
      "missing.config.ts",
      configText(`{ x: Image.fromName(${JSON.stringify(`${name}:never-published`)}) }`),
    );
    const result = await project.cli(["build", "-c", "missing.config.ts"]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toContain("never-published");
  });
});

describe.skipIf(skipIntegration)("fromDockerfile", () => {
  let project: TestProject;
  const name = uniqueName("dockerfile");

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "docker/Dockerfile",
      "FROM busybox:latest AS base\nCOPY hello.txt /hello.txt\n",
    );
    await project.write("docker/hello.txt", "hello from the context\n");
    await project.write("docker/secret.txt", "excluded\n");
    await project.write("docker/.dockerignore", "secret.txt\n");
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromDockerfile("docker/Dockerfile")
          .runCommands("cat /hello.txt > /copied") }`,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("appends steps to the Dockerfile's final stage", async () => {
    const dockerfile = await project.cli(["dockerfile", name]);
    expect(dockerfile.stdout).toBe(
      'FROM busybox:latest AS base\nCOPY hello.txt /hello.txt\nRUN ["/bin/sh", "-c", "cat /hello.txt > /copied"]\n',
    );
    const built = await project.cli(["build"]);
    expect(built.stderr).not.toContain("error:");
    expect(built.exitCode).toBe(0);
    expect(await docker(["run", "--rm", built.stdout.trim(), "cat", "/copied"])).toBe(
      "hello from the context",
    );
  });
});

describe.skipIf(skipIntegration)("run interrupted", () => {
  let project: TestProject;
  const name = uniqueName("interrupt");

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(`{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest") }`),
    );
    const built = await project.cli(["build", "--publish", name]);
    expect(built.exitCode).toBe(0);
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("removes the container on SIGINT and exits 130", async () => {
    const reference = (await project.cli(["resolve", name])).stdout.trim();
    const child = execa(binPath, ["run", name, "--", "sh", "-c", "echo started; sleep 60"], {
      cwd: project.dir,
      env: { MODAL_IMAGE_HOME: project.home, NO_COLOR: "1" },
      reject: false,
      stdin: "ignore",
    });
    // Wait until the container has printed, so the signal lands while it runs.
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("started")) resolve();
      });
    });
    child.kill("SIGINT");
    const result = await child;
    expect(result.exitCode).toBe(130);
    expect(await docker(["ps", "-a", "-q", "--filter", `ancestor=${reference}`])).toBe("");
  });

  it("removes the container when stdout closes", async () => {
    const reference = (await project.cli(["resolve", name])).stdout.trim();
    const child = execa(binPath, ["run", "-q", name, "--", "yes"], {
      cwd: project.dir,
      env: { MODAL_IMAGE_HOME: project.home, NO_COLOR: "1" },
      reject: false,
      stdin: "ignore",
    });
    // Closing the read end after the first output is what `| head -1` does.
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.stdout.destroy();

    const result = await child;

    expect(result.exitCode).toBe(130);
    expect(result.stderr).toContain("the reader of stdout closed it");
    expect(await docker(["ps", "-a", "-q", "--filter", `ancestor=${reference}`])).toBe("");
  });
});

describe.skipIf(skipIntegration)("build --expect and the registry index", () => {
  let first: TestProject;
  let second: TestProject;
  const name = uniqueName("shared");

  beforeAll(async () => {
    first = await createProject();
    second = await createProject();
    // Two projects with their own MODAL_IMAGE_HOME act as two CI machines.
    const config = configText(
      `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest").env({ MACHINE: "first" }) }`,
      openRegistry,
    );
    await first.write(
      "image.config.ts",
      config.replace("images:", 'index: "registry",\n  images:'),
    );
  });

  afterAll(async () => {
    await removeImages(`${openRegistry}/${name}`);
    await first.cleanup();
    await second.cleanup();
  });

  it("publishes through the registry and reads it on another machine", async () => {
    const built = await first.cli(["build", "--publish", name]);
    expect(built.stderr).not.toContain("error:");
    expect(built.exitCode).toBe(0);
    const digest = built.stdout.trim().split("@")[1]!;
    expect(await listTags(openRegistry, name)).toContain("latest");
    expect(await manifestDigest(openRegistry, name, "latest")).toBe(digest);

    const env = { MODAL_IMAGE_INDEX: "registry", MODAL_IMAGE_REGISTRY: openRegistry };
    const resolved = await second.cli(["resolve", name], { env });
    expect(resolved.exitCode).toBe(0);
    expect(resolved.stdout).toBe(built.stdout);
    const history = JSON.parse((await second.cli(["history", name, "--json"], { env })).stdout) as {
      history: Array<{ digest: string; action: string }>;
    };
    expect(history.history.map((entry) => [entry.digest, entry.action])).toEqual([
      [digest, "build"],
    ]);
    // The local index of the second machine stays empty.
    expect((await second.cli(["resolve", name])).exitCode).toBe(3);
  });

  it("exits 4 and moves nothing when --expect is stale", async () => {
    const before = (await first.cli(["resolve", name])).stdout;
    const text = await readFile(`${first.dir}/image.config.ts`, "utf8");
    await first.write("image.config.ts", text.replace('"first"', '"changed"'));
    const stale = `sha256:${"0".repeat(64)}`;
    const result = await first.cli(["build", "--publish", name, "--expect", stale]);
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toContain(stale);
    expect((await first.cli(["resolve", name])).stdout).toBe(before);
    expect(await manifestDigest(openRegistry, name, "latest")).toBe(before.trim().split("@")[1]);
  });
});
