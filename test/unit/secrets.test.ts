import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import Docker from "dockerode";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { prepareImage } from "../../src/build/prepare.js";
import {
  SecretValue,
  readSecretValues,
  secretFingerprint,
  secretMountsOf,
  secretRedactor,
} from "../../src/build/secrets.js";
import { BuildKitProgress, summarizeInstruction } from "../../src/docker/buildkit-progress.js";
import { BuildError, type BuildEvent } from "../../src/docker/progress.js";
import { encodeBytesField, encodeVarintField, readFields } from "../../src/docker/protobuf.js";
import { openBuildSession } from "../../src/docker/session.js";
import { generateDockerfile } from "../../src/dockerfile/generate.js";
import { UsageError } from "../../src/errors.js";
import { Image } from "../../src/image/image.js";
import { Secret } from "../../src/image/secret.js";
import { validateImage, type Problem } from "../../src/image/validate.js";
import { imageFromJson } from "../../src/config/from-json.js";
import { LocalIndex } from "../../src/index-store/local.js";

const base = Image.fromRegistry("busybox:latest");
const secretValue = "s3cr3t-VALUE-never-in-clear";

function dockerfileOf(image: Image): string {
  return generateDockerfile({ image, resolveLocalPath: (p) => join("/project", p) }).text;
}

describe("Secret", () => {
  it("returns plain, frozen objects that a JSON config can write too", () => {
    expect(Secret.fromEnv("NPM_TOKEN")).toEqual({ fromEnv: "NPM_TOKEN" });
    expect(Secret.fromFile("npmrc", ".npmrc", { target: "/root/.npmrc" })).toEqual({
      id: "npmrc",
      fromFile: ".npmrc",
      target: "/root/.npmrc",
    });
    expect(Object.isFrozen(Secret.fromEnv("A"))).toBe(true);
  });

  it("keeps runCommands immutable and copies the secret list", () => {
    const secrets = [Secret.fromEnv("A")];
    const image = base.runCommands("a", "b", { secrets });
    secrets.push(Secret.fromEnv("B"));
    const step = image.steps[0]!;
    expect(step).toEqual({
      kind: "runCommands",
      commands: ["a", "b"],
      options: { secrets: [{ fromEnv: "A" }] },
    });
    expect(base.steps).toHaveLength(0);
  });
});

describe("validateImage with secrets", () => {
  it("accepts well-formed secrets", () => {
    const image = base
      .runCommands("npm ci", {
        secrets: [
          Secret.fromEnv("NPM_TOKEN"),
          Secret.fromEnv("GH_TOKEN", { id: "gh", env: false }),
          Secret.fromFile("npmrc", ".npmrc", { target: "/root/.npmrc", env: "NPMRC" }),
        ],
      })
      .runCommands("true", { secrets: [Secret.fromEnv("NPM_TOKEN")] });
    expect(validateImage(image)).toEqual([]);
  });

  it("reports every problem with its path", () => {
    const image = base
      .runCommands("true", {
        secrets: [
          Secret.fromEnv("1BAD"),
          { fromFile: "x" },
          { fromEnv: "A", fromFile: "b", id: "a,b" },
          Secret.fromEnv("T", { target: "/a/../b", env: "X-Y" }),
          { fromEnv: "T2", extra: 1 } as never,
          "NPM_TOKEN" as never,
        ],
        secret: [],
      } as never)
      .runCommands("true", { secrets: "x" as never });
    expect(validateImage(image).map((problem) => problem.path)).toEqual([
      "runCommands.options.secret",
      "runCommands.options.secrets[0].fromEnv",
      "runCommands.options.secrets[1].id",
      "runCommands.options.secrets[2]",
      "runCommands.options.secrets[2].id",
      "runCommands.options.secrets[3].env",
      "runCommands.options.secrets[3].target",
      "runCommands.options.secrets[4].extra",
      "runCommands.options.secrets[5]",
      "runCommands#2.options.secrets",
    ]);
  });

  it.each([
    ["a target with a comma", { fromEnv: "A", target: "/a,b" }],
    ["a relative target", { fromEnv: "A", target: "run/a" }],
    ["a target with a space", { fromEnv: "A", target: "/a b" }],
    ["an id with a slash", { fromEnv: "A", id: "a/b" }],
    ["an id that starts with a dot", { fromEnv: "A", id: ".a" }],
    ["an env of the wrong type", { fromEnv: "A", env: true }],
  ])("rejects %s", (_name, spec) => {
    expect(validateImage(base.runCommands("true", { secrets: [spec as never] }))).toHaveLength(1);
  });

  it("rejects a shared id, env or target", () => {
    const problems = validateImage(
      base.runCommands("true", {
        secrets: [
          Secret.fromEnv("A"),
          Secret.fromFile("A", "a.txt"),
          Secret.fromFile("b", "b.txt", { env: "A" }),
          Secret.fromFile("c", "c.txt", { target: "/run/secrets/A" }),
        ],
      }),
    );
    expect(problems.map((problem) => problem.message)).toEqual([
      expect.stringContaining('id "A" is also used by runCommands.options.secrets[0]'),
      expect.stringContaining('env "A" is also used'),
      expect.stringContaining('target "/run/secrets/A" is also used'),
    ]);
  });

  it("rejects one id with two sources across steps", () => {
    const problems = validateImage(
      base
        .runCommands("a", { secrets: [Secret.fromEnv("TOKEN")] })
        .runCommands("b", { secrets: [Secret.fromFile("TOKEN", "token.txt")] }),
    );
    expect(problems).toEqual([
      {
        path: "runCommands#2.options.secrets[0]",
        message: expect.stringContaining("another source at runCommands.options.secrets[0]"),
      },
    ]);
  });
});

describe("generateDockerfile with secrets", () => {
  it("mounts each secret for its step only and exports env secrets", () => {
    const text = dockerfileOf(
      base
        .runCommands("npm ci", "npm test", {
          secrets: [
            Secret.fromEnv("NPM_TOKEN"),
            Secret.fromFile("npmrc", ".npmrc", { target: "/root/.npmrc" }),
          ],
        })
        .runCommands("ls"),
    );
    const exportLine = `NPM_TOKEN="$(cat '/run/secrets/NPM_TOKEN' && printf x)" || exit; NPM_TOKEN="\${NPM_TOKEN%x}"; export NPM_TOKEN`;
    const flags =
      "--mount=type=secret,id=NPM_TOKEN,target=/run/secrets/NPM_TOKEN,required=true " +
      "--mount=type=secret,id=npmrc,target=/root/.npmrc,required=true " +
      "--mount=type=bind,source=.modal-image/secrets/0,target=/dev/.modal-image-secrets";
    expect(text.split("\n")).toEqual([
      "FROM busybox:latest",
      `RUN ${flags} ${JSON.stringify(["/bin/sh", "-c", `${exportLine}\nnpm ci`]).replaceAll('","', '", "')}`,
      `RUN ${flags} ${JSON.stringify(["/bin/sh", "-c", `${exportLine}\nnpm test`]).replaceAll('","', '", "')}`,
      'RUN ["/bin/sh", "-c", "ls"]',
      "",
    ]);
  });

  it("writes no export for a file-only secret", () => {
    const text = dockerfileOf(
      base.runCommands("cat /run/secrets/GH", { secrets: [Secret.fromEnv("GH", { env: false })] }),
    );
    expect(text).toContain('["/bin/sh", "-c", "cat /run/secrets/GH"]');
  });

  it("leaves steps without secrets unchanged", () => {
    expect(dockerfileOf(base.runCommands("ls"))).toBe(
      'FROM busybox:latest\nRUN ["/bin/sh", "-c", "ls"]\n',
    );
  });
});

describe("secret values and the definition hash", () => {
  let root: string;
  let index: LocalIndex;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "modal-image-secrets-"));
    await mkdir(join(root, ".home"));
    index = new LocalIndex(join(root, ".home"));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const image = base.runCommands("use-it", {
    secrets: [Secret.fromEnv("TOKEN"), Secret.fromFile("conf", "conf/secret.txt")],
  });

  async function prepare(env: NodeJS.ProcessEnv, definition = image) {
    return prepareImage("app", definition, { baseDir: root, index, env });
  }

  it("hash follows values but never contains them", async () => {
    await mkdir(join(root, "conf"));
    await writeFile(join(root, "conf", "secret.txt"), "file-secret-1\n");
    const first = await prepare({ TOKEN: secretValue });
    const again = await prepare({ TOKEN: secretValue });
    const changed = await prepare({ TOKEN: `${secretValue}2` });
    await writeFile(join(root, "conf", "secret.txt"), "file-secret-2\n");
    const fileChanged = await prepare({ TOKEN: secretValue });

    expect(again.definitionHash).toBe(first.definitionHash);
    expect(changed.definitionHash).not.toBe(first.definitionHash);
    expect(fileChanged.definitionHash).not.toBe(first.definitionHash);
    expect(fileChanged.definitionHash).not.toBe(changed.definitionHash);

    for (const prepared of [first, changed]) {
      const printed = [
        prepared.dockerfile,
        prepared.definitionHash,
        JSON.stringify(prepared),
        inspect(prepared, { depth: 10 }),
        ...prepared.extraFiles.map((file) => file.content),
      ].join("\n");
      expect(printed).not.toContain(secretValue);
      expect(printed).not.toContain("file-secret");
    }
    // The step's fingerprint file changes with the value, so that BuildKit runs it again.
    expect(changed.extraFiles).toEqual([
      { archivePath: ".modal-image/secrets/0", content: expect.stringMatching(/^TOKEN scrypt:/) },
    ]);
    expect(changed.extraFiles[0]!.content).not.toBe(first.extraFiles[0]!.content);
  });

  it("hashes a definition without secrets as before secrets existed", async () => {
    const plain = await prepare({}, base.runCommands("ls"));
    const { createHash } = await import("node:crypto");
    const { hashContext } = await import("../../src/context/hash.js");
    const expected = createHash("sha256")
      .update(
        JSON.stringify({
          generatorVersion: 1,
          dockerfile: plain.dockerfile,
          context: await hashContext([]),
        }),
      )
      .digest("hex");
    expect(plain.definitionHash).toBe(`sha256:${expected}`);
    expect(plain.extraFiles).toEqual([]);
    expect(plain.secrets.size).toBe(0);
  });

  it("reports every missing or empty source at once, naming each and no value", async () => {
    const error = await prepare({ TOKEN: "" }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    const usage = error as UsageError;
    expect(usage.exitCode).toBe(2);
    expect(usage.problems).toEqual([
      "secret TOKEN: environment variable TOKEN is empty",
      `secret conf: file ${join(root, "conf", "secret.txt")} does not exist`,
    ]);
    const unset = await prepare({}).catch((caught: unknown) => caught);
    expect((unset as UsageError).problems[0]).toBe(
      "secret TOKEN: environment variable TOKEN is not set",
    );
  });

  it("rejects a value over BuildKit's limit", async () => {
    const mounts = secretMountsOf(base.runCommands("x", { secrets: [Secret.fromEnv("BIG")] }));
    await expect(
      readSecretValues(mounts, { baseDir: root, env: { BIG: "x".repeat(600 * 1024) } }),
    ).rejects.toThrow(/over BuildKit's limit/);
  });

  it("salts the fingerprint with the id", async () => {
    const value = new SecretValue(Buffer.from(secretValue));
    const a = await secretFingerprint("A", value);
    expect(a).toMatch(/^scrypt:[0-9a-f]{64}$/);
    expect(await secretFingerprint("A", value)).toBe(a);
    expect(await secretFingerprint("B", value)).not.toBe(a);
  });
});

describe("secrets in a JSON config", () => {
  it("reads the same objects as Secret returns", () => {
    const problems: Problem[] = [];
    const image = imageFromJson(
      [
        { fromRegistry: "busybox:latest" },
        { runCommands: ["npm ci", { secrets: [{ fromEnv: "NPM_TOKEN" }] }] },
        { runCommands: ["ls"] },
      ],
      "images.app",
      problems,
    )!;
    expect(problems).toEqual([]);
    expect(validateImage(image)).toEqual([]);
    expect(image.steps[0]).toEqual({
      kind: "runCommands",
      commands: ["npm ci"],
      options: { secrets: [{ fromEnv: "NPM_TOKEN" }] },
    });
  });
});

describe("SecretValue and the redactor", () => {
  it("never prints its value", () => {
    const value = new SecretValue(Buffer.from(secretValue));
    expect(String(value)).toBe("[secret]");
    expect(JSON.stringify({ value })).toBe('{"value":"[secret]"}');
    expect(inspect(value)).toBe("[secret]");
    expect(value.reveal().toString()).toBe(secretValue);
  });

  it("masks whole values and lines of multi-line values", () => {
    const redact = secretRedactor([
      new SecretValue(Buffer.from(`${secretValue}\n`)),
      new SecretValue(Buffer.from("line-one-xx\nline-two-yy\n")),
      new SecretValue(Buffer.from("abc")),
    ]);
    expect(redact(`token=${secretValue} and line-two-yy; abc`)).toBe(
      "token=[secret] and [secret]; abc",
    );
  });
});

// ---------------------------------------------------------------------------------------------
// BuildKit progress

function timestamp(): Buffer {
  return encodeBytesField(5, Buffer.concat([encodeVarintField(1, 1_700_000_000)]));
}

function vertex(fields: {
  digest: string;
  name?: string;
  started?: boolean;
  completed?: boolean;
  cached?: boolean;
  error?: string;
}): Buffer {
  return encodeBytesField(
    1,
    Buffer.concat([
      encodeBytesField(1, fields.digest),
      ...(fields.name ? [encodeBytesField(3, fields.name)] : []),
      ...(fields.cached ? [encodeVarintField(4, 1)] : []),
      ...(fields.started ? [timestamp()] : []),
      ...(fields.completed ? [encodeBytesField(6, encodeVarintField(1, 1))] : []),
      ...(fields.error ? [encodeBytesField(7, fields.error)] : []),
    ]),
  );
}

function log(digest: string, text: string): Buffer {
  return encodeBytesField(
    3,
    Buffer.concat([
      encodeBytesField(1, digest),
      encodeVarintField(3, 1),
      encodeBytesField(4, text),
    ]),
  );
}

function trace(...parts: Buffer[]) {
  return { id: "moby.buildkit.trace", aux: Buffer.concat(parts).toString("base64") };
}

describe("BuildKitProgress", () => {
  const runName = `[2/2] RUN --mount=type=secret,id=T,target=/run/secrets/T,required=true --mount=type=bind,source=.modal-image/secrets/1,target=/dev/.modal-image-secrets ${JSON.stringify(["/bin/sh", "-c", `T="$(cat '/run/secrets/T' && printf x)" || exit; T="\${T%x}"; export T\nmake`])}`;

  it("reports steps, whole output lines and the image ID", () => {
    const events: BuildEvent[] = [];
    const progress = new BuildKitProgress((event) => events.push(event));
    progress.handle(trace(vertex({ digest: "d0", name: "[internal] load build definition" })));
    progress.handle(
      trace(vertex({ digest: "d1", name: "[1/2] FROM docker.io/library/busybox", cached: true })),
    );
    progress.handle(trace(vertex({ digest: "d2", name: runName, started: true })));
    progress.handle(trace(log("d2", "hel"), log("d2", "lo\nwor")));
    progress.handle(trace(log("d2", "ld\n"), vertex({ digest: "d2", completed: true })));
    progress.handle({ id: "moby.image.id", aux: { ID: "sha256:abc" } });
    expect(progress.finish()).toEqual({ imageId: "sha256:abc" });
    expect(events).toEqual([
      { type: "step", index: 1, total: 2, instruction: "FROM docker.io/library/busybox" },
      { type: "output", text: "CACHED" },
      { type: "step", index: 2, total: 2, instruction: 'RUN ["/bin/sh", "-c", "make"]' },
      { type: "output", text: "hello" },
      { type: "output", text: "world" },
    ]);
  });

  it("throws a BuildError naming the failing step, with its redacted output", () => {
    const progress = new BuildKitProgress(undefined, (text) =>
      text.replaceAll("hunter22", "[secret]"),
    );
    progress.handle(trace(vertex({ digest: "d2", name: runName, started: true })));
    progress.handle(trace(log("d2", "token hunter22\nno such file")));
    progress.handle(trace(vertex({ digest: "d2", error: "exit code: 1" })));
    let error: unknown;
    try {
      progress.handle({ errorDetail: { message: "executor failed: hunter22" }, error: "x" });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(BuildError);
    const buildError = error as BuildError;
    expect(buildError.message).toBe(
      'build failed at step 2/2: RUN ["/bin/sh", "-c", "make"]: executor failed: [secret]',
    );
    expect(buildError.stepOutput).toEqual(["token [secret]", "no such file"]);
  });

  it("fails on a step error without a final message", () => {
    const progress = new BuildKitProgress();
    progress.handle(trace(vertex({ digest: "d2", name: runName, started: true })));
    progress.handle(trace(vertex({ digest: "d2", error: "exit code: 2" })));
    expect(() => progress.finish()).toThrow(
      'build failed at step 2/2: RUN ["/bin/sh", "-c", "make"]: exit code: 2',
    );
  });

  it("fails on a missing image ID or bad message", () => {
    expect(() => new BuildKitProgress().finish()).toThrow(/without an image ID/);
    expect(() =>
      new BuildKitProgress().handle({ id: "moby.buildkit.trace", aux: "/////w==" }),
    ).toThrow(/cannot be decoded/);
  });

  it("summarizes only RUN steps with mounts", () => {
    expect(summarizeInstruction('RUN ["/bin/sh", "-c", "ls"]')).toBe('RUN ["/bin/sh", "-c", "ls"]');
    expect(summarizeInstruction("RUN --mount=type=cache,target=/x make")).toBe("RUN make");
  });
});

describe("protobuf", () => {
  it("reads back what it writes", () => {
    const bytes = Buffer.concat([encodeBytesField(1, "id"), encodeVarintField(2, 300)]);
    expect([...readFields(bytes)].map((field) => [field.field, field.wireType])).toEqual([
      [1, 2],
      [2, 0],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Session

/** Calls a unary gRPC method as the daemon does, over an HTTP/2 client session. */
function callUnary(client: http2.ClientHttp2Session, path: string, body: Buffer) {
  return new Promise<{ status: string | undefined; message: Buffer | undefined }>(
    (resolve, reject) => {
      const frame = Buffer.alloc(5);
      frame.writeUInt32BE(body.byteLength, 1);
      const stream = client.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc",
        te: "trailers",
      });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = String(headers["grpc-status"]);
      });
      stream.on("trailers", (trailers) => (status = String(trailers["grpc-status"])));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const data = Buffer.concat(chunks);
        resolve({ status, message: data.byteLength >= 5 ? data.subarray(5) : undefined });
      });
      stream.on("error", reject);
      stream.end(Buffer.concat([frame, body]));
    },
  );
}

describe("openBuildSession", () => {
  it("upgrades POST /session and serves secrets and health checks over gRPC", async () => {
    const dir = await mkdtemp(join(tmpdir(), "modal-image-session-"));
    const socketPath = join(dir, "docker.sock");
    const received: http.IncomingHttpHeaders[] = [];
    let client: http2.ClientHttp2Session | undefined;
    const connected = new Promise<http2.ClientHttp2Session>((resolve) => {
      const server = http.createServer();
      server.on("upgrade", (request, socket) => {
        received.push(request.headers);
        socket.write(
          "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        );
        client = http2.connect("http://daemon", { createConnection: () => socket });
        resolve(client);
        server.close();
      });
      server.listen(socketPath);
    });
    const docker = new Docker({ socketPath });
    const session = await openBuildSession(docker, new Map([["TOKEN", Buffer.from(secretValue)]]), {
      name: "app",
      sharedKey: "app",
    });
    try {
      const daemon = await connected;
      expect(received[0]).toMatchObject({
        upgrade: "h2c",
        "x-docker-expose-session-uuid": session.id,
        "x-docker-expose-session-name": "app",
        "x-docker-expose-session-grpc-method":
          "/moby.buildkit.secrets.v1.Secrets/GetSecret, /grpc.health.v1.Health/Check",
      });
      const found = await callUnary(
        daemon,
        "/moby.buildkit.secrets.v1.Secrets/GetSecret",
        encodeBytesField(1, "TOKEN"),
      );
      expect(found.status).toBe("0");
      const [data] = [...readFields(found.message!)];
      expect(Buffer.from(data!.value as Uint8Array).toString()).toBe(secretValue);

      const missing = await callUnary(
        daemon,
        "/moby.buildkit.secrets.v1.Secrets/GetSecret",
        encodeBytesField(1, "OTHER"),
      );
      expect(missing.status).toBe("5");
      expect(session.missing).toEqual(["OTHER"]);

      const health = await callUnary(daemon, "/grpc.health.v1.Health/Check", Buffer.alloc(0));
      expect(health).toEqual({ status: "0", message: encodeVarintField(1, 1) });
    } finally {
      session.close();
      client?.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
