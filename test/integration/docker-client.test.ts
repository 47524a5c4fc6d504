import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import os from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import Docker from "dockerode";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BuildError,
  buildImage,
  connectDocker,
  inspectDistribution,
  inspectImage,
  pullImage,
  pushImage,
  removeImage,
  runContainer,
  tagImage,
  type BuildEvent,
  type RegistryAuth,
} from "../../src/docker/client.js";
import { InterruptedError, NotFoundError, OperationError } from "../../src/errors.js";
import {
  authRegistry,
  openRegistry,
  readAuthRegistryCredentials,
  type RegistryCredentials,
} from "../helpers/stack.js";

const runId = randomBytes(4).toString("hex");
const repositoryPath = `modal-image-test/${runId}`;
const runLabel = "modal-image-test.run";
const manifestAccept = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
].join(", ");

// Tags and image IDs this file creates, in creation order, removed in afterAll even when a test
// fails. Failed builds leave the images of their earlier steps, so those IDs are recorded too.
const createdImages: string[] = [];
const intermediateImagePattern = /^ ---> ([0-9a-f]{12})$/;
// Images the stack provides, which cleanup must never remove.
const baseImageReferences = ["busybox:latest", "debian:bookworm-slim"];
// Manifests pushed to a registry, deleted in afterAll (both registries enable deletes).
const pushedManifests: Array<{ registry: string; repository: string; digest: string }> = [];

/** Packs files into a tar stream, the form buildImage takes a build context in. */
function tarContext(files: Record<string, string>): NodeJS.ReadableStream {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name }, content);
  pack.finalize();
  // tar-stream 3 returns a streamx stream; the wrapper gives it Node's stream type.
  return Readable.from(pack, { objectMode: false });
}

async function build(
  dockerfile: string,
  options: { tags?: string[]; labels?: Record<string, string>; signal?: AbortSignal } = {},
  onEvent?: (event: BuildEvent) => void,
): Promise<string> {
  createdImages.push(...(options.tags ?? []));
  let stepIndex = 0;
  const { imageId } = await buildImage({
    context: tarContext({ Dockerfile: dockerfile, "hello.txt": "hello from the context\n" }),
    dockerfile: "Dockerfile",
    ...options,
    onEvent: (event) => {
      // Step 1 is FROM, whose " ---> ID" line names the base image.
      if (event.type === "step") stepIndex = event.index;
      const intermediate = event.type === "output" && intermediateImagePattern.exec(event.text);
      if (intermediate && intermediate[1] && stepIndex > 1) createdImages.push(intermediate[1]);
      onEvent?.(event);
    },
  });
  createdImages.push(imageId);
  return imageId;
}

/** Polls `check` every 100 ms for up to 10 s and returns whether it became true. */
async function waitFor(check: () => Promise<boolean>): Promise<boolean> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

function basicAuthHeader(credentials?: RegistryCredentials): Record<string, string> {
  if (!credentials) return {};
  const token = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
  return { authorization: `Basic ${token}` };
}

/** Returns the Docker-Content-Digest header of `HEAD /v2/<repository>/manifests/<tag>`. */
async function registryDigest(
  registry: string,
  repository: string,
  tag: string,
  credentials?: RegistryCredentials,
): Promise<string | null> {
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: manifestAccept, ...basicAuthHeader(credentials) },
  });
  expect(response.status).toBe(200);
  return response.headers.get("docker-content-digest");
}

function collectText(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

async function containersWithLabel(docker: Docker, value: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${runLabel}=${value}`] } });
}

describe.skipIf(!!process.env.MODAL_IMAGE_STACK_MISSING && !process.env.CI)("docker client", () => {
  const docker = connectDocker();
  let credentials: RegistryCredentials;
  let baseImageId: string;

  beforeAll(async () => {
    credentials = await readAuthRegistryCredentials();
    baseImageId = await build(`FROM busybox:latest\nRUN echo ${runId} > /base.txt\n`);
  });

  afterAll(async () => {
    for (const { registry, repository, digest } of pushedManifests) {
      const auth = registry === authRegistry ? basicAuthHeader(credentials) : {};
      await fetch(`http://${registry}/v2/${repository}/manifests/${digest}`, {
        method: "DELETE",
        headers: auth,
      }).catch(() => undefined);
    }
    // Tags first, then IDs newest first, because the daemon keeps an image with children.
    const isImageId = (reference: string) => /^(sha256:)?[0-9a-f]{12,64}$/.test(reference);
    const tags = createdImages.filter((reference) => !isImageId(reference));
    const protectedIds = new Set<string>();
    for (const reference of baseImageReferences) {
      const id = (await inspectImage(reference))?.id;
      if (id) protectedIds.add(id).add(id.slice("sha256:".length, "sha256:".length + 12));
    }
    const imageIds = createdImages.filter(isImageId).reverse();
    for (const reference of [...new Set([...tags, ...imageIds])]) {
      if (protectedIds.has(reference)) continue;
      await removeImage(reference, { force: true }).catch(() => undefined);
    }
    for (const container of await containersWithLabel(docker, runId)) {
      await docker
        .getContainer(container.Id)
        .remove({ force: true })
        .catch(() => undefined);
    }
  });

  describe("buildImage", () => {
    it("returns the image ID with labels and tags", async () => {
      const tags = [`${repositoryPath}/built:a`, `${repositoryPath}/built:b`];
      const events: BuildEvent[] = [];
      const imageId = await build(
        `FROM busybox:latest\nRUN echo ${runId} > /run.txt\nCOPY hello.txt /hello.txt\n`,
        { tags, labels: { "org.example.run": runId } },
        (event) => events.push(event),
      );

      expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
      const info = await inspectImage(imageId);
      expect(info?.id).toBe(imageId);
      expect(info?.labels["org.example.run"]).toBe(runId);
      expect(info?.repoTags).toEqual(expect.arrayContaining(tags));

      const steps = events.filter((event) => event.type === "step");
      expect(steps[0]).toEqual({
        type: "step",
        index: 1,
        total: steps.length,
        instruction: "FROM busybox:latest",
      });
      expect(steps.map((step) => step.type === "step" && step.instruction)).toContain(
        "COPY hello.txt /hello.txt",
      );
    });

    it("builds the RUN and COPY results into the image", async () => {
      const imageId = await build(
        `FROM busybox:latest\nRUN echo built ${runId} > /built.txt\nCOPY hello.txt /hello.txt\n`,
      );
      const stdout = collectText();
      const stderr = collectText();
      const exitCode = await runContainer({
        image: imageId,
        cmd: ["cat", "/built.txt", "/hello.txt"],
        labels: { [runLabel]: runId },
        stdout: stdout.stream,
        stderr: stderr.stream,
      });
      expect(exitCode).toBe(0);
      expect(stdout.text()).toBe(`built ${runId}\nhello from the context\n`);
      expect(stderr.text()).toBe("");
    });

    it("reports a failing RUN with its step and output", async () => {
      const outputLines: string[] = [];
      const error = await rejectionOf(
        build(
          `FROM busybox:latest\nRUN echo ${runId}\nRUN sh -c 'echo out; exit 3'\n`,
          {},
          (event) => {
            if (event.type === "output") outputLines.push(event.text);
          },
        ),
      );
      expect(error).toBeInstanceOf(BuildError);
      const buildError = error as BuildError;
      expect(buildError.message).toContain(
        `The command '/bin/sh -c sh -c 'echo out; exit 3'' returned a non-zero code: 3`,
      );
      expect(buildError.message).toContain("step 3/3: RUN sh -c 'echo out; exit 3'");
      expect(buildError.step).toEqual({
        index: 3,
        total: 3,
        instruction: "RUN sh -c 'echo out; exit 3'",
      });
      expect(buildError.stepOutput).toContain("out");
      expect(buildError.stepOutput).not.toContainEqual(expect.stringMatching(/^ ---> /));
      expect(buildError.exitCode).toBe(1);

      // forcerm removes the failed step's container, which runs on the image of step 2.
      const step2Image = outputLines
        .map((line) => intermediateImagePattern.exec(line)?.[1])
        .filter((id) => id !== undefined)
        .at(-1);
      expect(step2Image).toBeDefined();
      const leftovers = await docker.listContainers({
        all: true,
        filters: { ancestor: [step2Image ?? ""] },
      });
      expect(leftovers).toEqual([]);
    });

    it("reports a Dockerfile syntax error", async () => {
      const error = await rejectionOf(build("FROM busybox:latest\nRUNX echo\n"));
      expect(error).toBeInstanceOf(OperationError);
      expect((error as Error).message).toBe(
        "build failed: dockerfile parse error line 2: unknown instruction: RUNX",
      );
    });

    it("reports a missing base image", async () => {
      const error = await rejectionOf(
        build(`FROM 127.0.0.1:5999/modal-image-test/none:${runId}\n`),
      );
      expect(error).toBeInstanceOf(BuildError);
      expect((error as Error).message).toContain("127.0.0.1:5999");
    });

    it("cancels on abort", async () => {
      const marker = `modal-image-abort-${runId}`;
      const buildContainers = async () =>
        (await docker.listContainers({ all: true })).filter((container) =>
          container.Command.includes(marker),
        );
      const controller = new AbortController();
      const outcome = rejectionOf(
        build(`FROM busybox:latest\nRUN sleep 60 && echo ${marker}\n`, {
          signal: controller.signal,
        }),
      );

      const running = await waitFor(async () =>
        (await buildContainers()).some((container) => container.State === "running"),
      );
      expect(running).toBe(true);
      const abortedAt = Date.now();
      controller.abort();

      const error = await outcome;
      expect(error).toBeInstanceOf(InterruptedError);
      expect(Date.now() - abortedAt).toBeLessThan(5_000);
      // The daemon kills and removes the RUN container once the client disconnects.
      expect(await waitFor(async () => (await buildContainers()).length === 0)).toBe(true);
    });

    it("rejects an aborted signal before sending anything", async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(
        build("FROM busybox:latest\n", { signal: controller.signal }),
      ).rejects.toBeInstanceOf(InterruptedError);
    });
  });

  describe("pushImage", () => {
    it("returns the digest the registry stores", async () => {
      const repository = `${openRegistry}/${repositoryPath}/pushed`;
      await tagImage(baseImageId, repository, "v1");
      createdImages.push(`${repository}:v1`);

      const statuses: string[] = [];
      const { digest } = await pushImage({
        repository,
        tag: "v1",
        onEvent: (event) => statuses.push(event.text),
      });
      pushedManifests.push({
        registry: openRegistry,
        repository: `${repositoryPath}/pushed`,
        digest,
      });

      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(await registryDigest(openRegistry, `${repositoryPath}/pushed`, "v1")).toBe(digest);
      expect(statuses).toContain(`The push refers to repository [${repository}]`);

      const distribution = await inspectDistribution(`${repository}@${digest}`);
      expect(distribution?.digest).toBe(digest);
      const missing = `${repository}@sha256:${"0".repeat(64)}`;
      expect(await inspectDistribution(missing)).toBeUndefined();
    });

    it("pulls a pinned reference", async () => {
      const repository = `${openRegistry}/${repositoryPath}/pinned`;
      await tagImage(baseImageId, repository, "v1");
      createdImages.push(`${repository}:v1`);
      const { digest } = await pushImage({ repository, tag: "v1" });
      pushedManifests.push({
        registry: openRegistry,
        repository: `${repositoryPath}/pinned`,
        digest,
      });
      const reference = `${repository}@${digest}`;
      createdImages.push(reference);

      const statuses: string[] = [];
      await pullImage({ reference, onEvent: (event) => statuses.push(event.text) });
      expect(statuses).toContain(`Digest: ${digest}`);
      expect((await inspectImage(reference))?.id).toBe(baseImageId);
    });

    it("reports an unknown pinned reference", async () => {
      const reference = `${openRegistry}/${repositoryPath}/none@sha256:${"0".repeat(64)}`;
      const error = await rejectionOf(pullImage({ reference }));
      expect(error).toBeInstanceOf(NotFoundError);
      expect((error as Error).message).toContain(`from registry ${openRegistry}`);
      expect((error as Error).message).toContain("manifest unknown");
    });

    it("reports an unreachable registry", async () => {
      const registry = "127.0.0.1:5999";
      const repository = `${registry}/${repositoryPath}/unreachable`;
      await tagImage(baseImageId, repository, "v1");
      createdImages.push(`${repository}:v1`);

      const error = await rejectionOf(pushImage({ repository, tag: "v1" }));
      expect(error).toBeInstanceOf(OperationError);
      const message = (error as OperationError).message;
      expect(message).toContain(`to registry ${registry} failed`);
      expect(message).toContain("connection refused");
      expect((error as OperationError).hint).toContain(registry);
    });

    it("reports an image missing locally", async () => {
      const repository = `${openRegistry}/${repositoryPath}/never-built`;
      const error = await rejectionOf(pushImage({ repository, tag: "v1" }));
      expect(error).toBeInstanceOf(OperationError);
      expect((error as Error).message).toContain(
        `failed: An image does not exist locally with the tag: ${repository}`,
      );
      expect((error as OperationError).hint).toContain("build or tag the image");
    });

    it("needs credentials for the auth registry", async () => {
      const repository = `${authRegistry}/${repositoryPath}/private`;
      await tagImage(baseImageId, repository, "v1");
      createdImages.push(`${repository}:v1`);

      const anonymous = await rejectionOf(pushImage({ repository, tag: "v1" }));
      expect(anonymous).toBeInstanceOf(OperationError);
      expect((anonymous as Error).message).toContain(`to registry ${authRegistry} failed`);
      // Engine 20.10 words a Basic auth challenge met without credentials this way.
      expect((anonymous as Error).message).toContain("failed: no basic auth credentials");
      expect((anonymous as OperationError).hint).toContain(`docker login ${authRegistry}`);

      const wrongPassword = `wrong-${runId}`;
      const wrong: RegistryAuth = {
        username: credentials.username,
        password: wrongPassword,
        serveraddress: authRegistry,
      };
      const rejected = await rejectionOf(pushImage({ repository, tag: "v1", auth: wrong }));
      expect(rejected).toBeInstanceOf(OperationError);
      expect((rejected as Error).message).toContain("unauthorized: authentication required");
      expect((rejected as OperationError).hint).toContain("rejected the credentials");
      expect((rejected as Error).message).not.toContain(wrongPassword);
      expect((rejected as OperationError).hint).not.toContain(wrongPassword);

      const auth: RegistryAuth = {
        username: credentials.username,
        password: credentials.password,
        serveraddress: authRegistry,
      };
      const { digest } = await pushImage({ repository, tag: "v1", auth });
      pushedManifests.push({
        registry: authRegistry,
        repository: `${repositoryPath}/private`,
        digest,
      });
      expect(
        await registryDigest(authRegistry, `${repositoryPath}/private`, "v1", credentials),
      ).toBe(digest);
    });
  });

  describe("runContainer", () => {
    it("returns the exit code with stdout and stderr apart", async () => {
      const stdout = collectText();
      const stderr = collectText();
      const exitCode = await runContainer({
        image: "busybox:latest",
        cmd: ["sh", "-c", "echo o; echo e >&2; exit 7"],
        env: ["GREETING=hi"],
        labels: { [runLabel]: runId },
        stdout: stdout.stream,
        stderr: stderr.stream,
      });
      expect(exitCode).toBe(7);
      expect(stdout.text()).toBe("o\n");
      expect(stderr.text()).toBe("e\n");
      expect(await containersWithLabel(docker, runId)).toEqual([]);
    });

    it("writes all output before returning", async () => {
      const stdout = collectText();
      const exitCode = await runContainer({
        image: "busybox:latest",
        cmd: ["sh", "-c", "seq 1 20000; echo $GREETING"],
        env: ["GREETING=last line"],
        labels: { [runLabel]: runId },
        stdout: stdout.stream,
        stderr: new PassThrough(),
      });
      expect(exitCode).toBe(0);
      const lines = stdout.text().split("\n");
      expect(lines).toHaveLength(20_002);
      expect(lines.at(-2)).toBe("last line");
    });

    it("kills and removes the container on abort", async () => {
      const label = `${runId}-abort`;
      const controller = new AbortController();
      const stdout = collectText();
      stdout.stream.once("data", () => controller.abort());
      const startedAt = Date.now();
      const error = await rejectionOf(
        runContainer({
          image: "busybox:latest",
          cmd: ["sh", "-c", "echo started; sleep 60"],
          labels: { [runLabel]: label },
          stdout: stdout.stream,
          stderr: new PassThrough(),
          signal: controller.signal,
        }),
      );
      expect(error).toBeInstanceOf(InterruptedError);
      expect(Date.now() - startedAt).toBeLessThan(10_000);
      expect(await containersWithLabel(docker, label)).toEqual([]);
    });

    it("reports a missing image", async () => {
      const error = await rejectionOf(
        runContainer({
          image: `${repositoryPath}/missing:none`,
          stdout: new PassThrough(),
          stderr: new PassThrough(),
        }),
      );
      expect(error).toBeInstanceOf(NotFoundError);
    });
  });

  describe("images", () => {
    it("inspectImage returns undefined for a missing image", async () => {
      expect(await inspectImage(`${repositoryPath}/missing:none`)).toBeUndefined();
    });

    it("removeImage returns false for a missing image", async () => {
      expect(await removeImage(`${repositoryPath}/missing:none`)).toBe(false);
    });

    it("tagImage rejects a missing image", async () => {
      const error = await rejectionOf(
        tagImage(`sha256:${"0".repeat(64)}`, `${repositoryPath}/x`, "v1"),
      );
      expect(error).toBeInstanceOf(NotFoundError);
    });
  });
});

/** Creates a client for DOCKER_HOST `dockerHost`, leaving process.env as it was. */
function connectTo(dockerHost: string): Docker {
  const previous = process.env.DOCKER_HOST;
  process.env.DOCKER_HOST = dockerHost;
  try {
    return connectDocker();
  } finally {
    if (previous === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = previous;
  }
}

describe("connectDocker", () => {
  it("names the daemon address when nothing listens", async () => {
    const docker = connectTo("unix:///tmp/modal-image-no-daemon.sock");
    const error = await rejectionOf(inspectImage("busybox:latest", docker));
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("unix:///tmp/modal-image-no-daemon.sock");
    expect((error as OperationError).hint).toContain("scripts/stack.sh up");
  });

  it("names a TCP daemon address", async () => {
    const docker = connectTo("tcp://127.0.0.1:1");
    const error = await rejectionOf(inspectImage("busybox:latest", docker));
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("tcp://127.0.0.1:1");
  });
});

// A server on a unix socket that replies to every request with a fixed progress stream, to cover
// streams the real daemon sends only when something breaks.
describe("progress streams from a fake daemon", () => {
  let socketDir: string;
  let server: Server;
  let docker: Docker;
  let reply: (response: ServerResponse) => void = (response) => response.end();

  beforeAll(async () => {
    socketDir = await mkdtemp(path.join(os.tmpdir(), "modal-image-fake-daemon-"));
    const socketPath = path.join(socketDir, "docker.sock");
    server = createServer((request, response) => {
      // Reads the request body (the build context) before replying, as the daemon does.
      request.resume();
      request.on("end", () => reply(response));
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    docker = connectTo(`unix://${socketPath}`);
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(socketDir, { recursive: true, force: true });
  });

  function streamLines(lines: string[], options: { drop?: boolean } = {}): void {
    reply = (response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.write(lines.join("\n") + "\n");
      if (options.drop) response.socket?.destroy();
      else response.end();
    };
  }

  const fakeBuild = () =>
    buildImage({
      context: tarContext({ Dockerfile: "FROM scratch\n" }),
      dockerfile: "Dockerfile",
      docker,
    });

  it("rejects a build stream without an image ID", async () => {
    streamLines(['{"stream":"Step 1/1 : FROM scratch"}', '{"stream":"\\n"}']);
    const error = await rejectionOf(fakeBuild());
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toBe("the build stream ended without an image ID");
  });

  it("rejects a non-JSON line in a build stream", async () => {
    streamLines([
      '{"stream":"Step 1/1 : FROM scratch"}',
      "panic: oops",
      '{"aux":{"ID":"sha256:1"}}',
    ]);
    const error = await rejectionOf(fakeBuild());
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain('"panic: oops"');
  });

  it("rejects a build stream cut off mid-way", async () => {
    streamLines(['{"stream":"Step 1/1 : FROM scratch"}'], { drop: true });
    const error = await rejectionOf(fakeBuild());
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("closed the connection");
  });

  it("rejects a push stream without a digest", async () => {
    streamLines(['{"status":"The push refers to repository [127.0.0.1:5000/x]"}']);
    const error = await rejectionOf(
      pushImage({ repository: "127.0.0.1:5000/x", tag: "v1", docker }),
    );
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toBe(
      "push of 127.0.0.1:5000/x:v1 ended without a manifest digest from 127.0.0.1:5000",
    );
  });

  it("masks the password in a push error", async () => {
    const password = "s3cret-password";
    streamLines([`{"error":"registry said: bad password ${password}"}`]);
    const auth: RegistryAuth = { username: "u", password, serveraddress: "127.0.0.1:5000" };
    const error = await rejectionOf(
      pushImage({ repository: "127.0.0.1:5000/x", tag: "v1", auth, docker }),
    );
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("bad password [redacted]");
    expect((error as Error).message).not.toContain(password);
  });
});
