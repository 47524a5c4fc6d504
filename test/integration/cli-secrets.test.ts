import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createProject,
  skipIntegration,
  uniqueName,
  type CliResult,
  type TestProject,
} from "../helpers/cli.js";
import { docker, removeImages } from "../helpers/docker.js";
import { openRegistry } from "../helpers/stack.js";

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Returns a fresh value that nothing else in the daemon or the test output can contain by chance. */
function freshSecret(label: string): string {
  return `${label}-${randomBytes(12).toString("hex")}`;
}

function secretsConfig(name: string): string {
  return [
    'import { defineConfig, Image, Secret } from "modal-image";',
    "",
    "export default defineConfig({",
    `  registry: ${JSON.stringify(openRegistry)},`,
    "  images: {",
    `    ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")`,
    // The command proves each value arrived by storing only its sha256.
    "      .runCommands(",
    `        'sha256sum /run/secrets/TOKEN | cut -c1-64 > /token.sha; printf %s "$TOKEN" | sha256sum | cut -c1-64 > /token-env.sha; sha256sum /root/.netrc | cut -c1-64 > /file.sha; printf %s "$FILE_SECRET" | sha256sum | cut -c1-64 > /file-env.sha; echo stored',`,
    '        { secrets: [Secret.fromEnv("TOKEN"), Secret.fromFile("netrc", "secrets/netrc", { target: "/root/.netrc", env: "FILE_SECRET" })] },',
    "      )",
    // A later step can read neither the file nor the variable.
    `      .runCommands('{ if test -e /run/secrets/TOKEN || test -e /root/.netrc; then echo present; else echo absent; fi; echo "env=\${TOKEN:-unset}"; } > /later.txt'),`,
    "  },",
    "});",
    "",
  ].join("\n");
}

interface BuildJson {
  images: Array<{ imageId: string; reference: string; definitionHash: string }>;
}

/** Checks that none of the secret values' bytes occur in `haystack`. */
function expectNoSecret(haystack: string | Buffer, secrets: readonly string[], where: string) {
  const bytes = typeof haystack === "string" ? Buffer.from(haystack) : haystack;
  for (const secret of secrets) {
    // Also without a trailing newline, as a command substitution would print it.
    for (const needle of [secret, secret.trim()]) {
      expect(bytes.includes(Buffer.from(needle)), `${where} contains a secret value`).toBe(false);
    }
  }
}

describe.skipIf(skipIntegration)("build with secrets", () => {
  let project: TestProject;
  const name = uniqueName("secrets");
  const repository = `${openRegistry}/${name}`;
  const token = freshSecret("token");
  const fileSecret = `${freshSecret("machine example.com password")}\n`;
  const secrets = [token, fileSecret];
  let first: CliResult;
  let built: BuildJson["images"][number];
  let workDir: string;

  beforeAll(async () => {
    project = await createProject();
    workDir = await mkdtemp(join(tmpdir(), "modal-image-secrets-save-"));
    await project.write("image.config.ts", secretsConfig(name));
    await project.write("secrets/netrc", fileSecret);
    first = await project.cli(["build", "--json", "--publish", name], {
      env: { TOKEN: token },
    });
    if (first.exitCode === 0) built = (JSON.parse(first.stdout) as BuildJson).images[0]!;
  });

  afterAll(async () => {
    await removeImages(repository);
    await project.cleanup();
    await rm(workDir, { recursive: true, force: true });
  });

  it("builds and publishes, and the command got both values", async () => {
    expect(first.stderr).not.toContain("error:");
    expect(first.exitCode).toBe(0);
    const read = async (file: string) =>
      (await docker(["run", "--rm", built.imageId, "cat", file])).trim();
    expect(await read("/token.sha")).toBe(sha256(token));
    expect(await read("/token-env.sha")).toBe(sha256(token));
    expect(await read("/file.sha")).toBe(sha256(fileSecret));
    // The variable keeps the file's trailing newline.
    expect(await read("/file-env.sha")).toBe(sha256(fileSecret));
  });

  it("does not show the secrets to a later step", async () => {
    expect(await docker(["run", "--rm", built.imageId, "cat", "/later.txt"])).toBe(
      "absent\nenv=unset",
    );
  });

  it("keeps the values out of the CLI's output, with --json and with plain progress", async () => {
    expectNoSecret(first.stdout + first.stderr, secrets, "build --json output");
    const plain = await project.cli(["build", "--force", "--no-cache", "--verbose", name], {
      env: { TOKEN: token, CI: "1" },
    });
    expect(plain.exitCode).toBe(0);
    expect(plain.stderr).toContain("stored");
    expectNoSecret(plain.stdout + plain.stderr, secrets, "build --verbose output");
  });

  it("keeps the values out of the Dockerfile, history, inspect and every layer", async () => {
    const dockerfile = await project.cli(["dockerfile", name]);
    expect(dockerfile.exitCode).toBe(0);
    expect(dockerfile.stdout).toContain("--mount=type=secret,id=TOKEN");
    expectNoSecret(dockerfile.stdout, secrets, "the generated Dockerfile");

    expectNoSecret(
      await docker(["history", "--no-trunc", built.imageId]),
      secrets,
      "docker history",
    );
    expectNoSecret(await docker(["image", "inspect", built.imageId]), secrets, "docker inspect");
    expectNoSecret(await docker(["image", "inspect", built.reference]), secrets, "pushed image");

    const archive = join(workDir, "image.tar");
    await execa("docker", ["save", "-o", archive, built.imageId]);
    const saved = await readFile(archive);
    expectNoSecret(saved, secrets, "docker save");
    // Each layer is stored uncompressed in the archive; list them to be sure there were some.
    const listing = await execa("tar", ["-tf", archive]);
    expect(listing.stdout).toMatch(/layer\.tar/);
    for (const layer of listing.stdout.split("\n").filter((entry) => entry.endsWith("layer.tar"))) {
      const files = await execa("tar", ["-xOf", archive, layer], { encoding: "buffer" });
      expectNoSecret(Buffer.from(files.stdout), secrets, `layer ${layer}`);
    }
  });

  it("changes the definition hash when a value changes, and runs the step again", async () => {
    const other = freshSecret("rotated");
    const result = await project.cli(["build", "--json", name], { env: { TOKEN: other } });
    expect(result.exitCode).toBe(0);
    const rebuilt = (JSON.parse(result.stdout) as BuildJson).images[0]!;
    expect(rebuilt.definitionHash).not.toBe(built.definitionHash);
    expectNoSecret(rebuilt.definitionHash, [other, token], "the definition hash");
    // BuildKit leaves secrets out of its cache key; the step ran again with the new value.
    expect((await docker(["run", "--rm", rebuilt.imageId, "cat", "/token.sha"])).trim()).toBe(
      sha256(other),
    );

    const same = await project.cli(["build", "--json", name], { env: { TOKEN: token } });
    expect((JSON.parse(same.stdout) as BuildJson).images[0]!.definitionHash).toBe(
      built.definitionHash,
    );
  });

  it("masks a value that a command prints, and names the failing step", async () => {
    const failing = await createProject();
    try {
      await failing.write(
        "image.config.ts",
        [
          'import { defineConfig, Image, Secret } from "modal-image";',
          'export default defineConfig({ images: { fails: Image.fromRegistry("busybox:latest")',
          `  .runCommands('echo "got $TOKEN"; exit 3', { secrets: [Secret.fromEnv("TOKEN")] }) } });`,
          "",
        ].join("\n"),
      );
      const result = await failing.cli(["build", "--verbose"], { env: { TOKEN: token } });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(
        `error: build failed at step 2/2: RUN ["/bin/sh", "-c", "echo \\"got $TOKEN\\"; exit 3"]`,
      );
      expect(result.stderr).toContain("exit code: 3");
      expect(result.stderr).toContain("got [secret]");
      expectNoSecret(result.stdout + result.stderr, [token], "a failed build's output");
    } finally {
      await failing.cleanup();
    }
  });

  it("exits 2 before contacting the daemon when a variable or file is missing", async () => {
    const noDaemon = { DOCKER_HOST: "unix:///nonexistent/docker.sock" };
    const missing = await project.cli(["build", name], { env: { ...noDaemon, TOKEN: undefined } });
    expect(missing.exitCode).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain("error: secret TOKEN: environment variable TOKEN is not set");
    expect(missing.stderr).not.toContain("cannot connect");

    const empty = await project.cli(["build", name], { env: { ...noDaemon, TOKEN: "" } });
    expect(empty.exitCode).toBe(2);
    expect(empty.stderr).toContain("environment variable TOKEN is empty");
  });
});

// ---------------------------------------------------------------------------------------------
// Daemons that cannot serve secrets

interface FakeDaemon {
  host: string;
  requests: string[];
  close(): Promise<void>;
}

/** Serves the Engine API endpoints a secret build calls, responding as `behaviour` specifies. */
async function fakeDaemon(behaviour: {
  apiVersion: string;
  session: "upgrade" | "404";
  build: "400";
}): Promise<FakeDaemon> {
  const dir = await mkdtemp(join(tmpdir(), "modal-image-fake-daemon-"));
  const socketPath = join(dir, "docker.sock");
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(`${request.method} ${request.url?.split("?")[0]}`);
    request.resume();
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { "Content-Type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.url?.startsWith("/version")) {
      return json(200, { ApiVersion: behaviour.apiVersion, Os: "linux", Version: "fake" });
    }
    // The lookup of an image built earlier from the same definition finds none.
    if (request.url?.startsWith("/images/json")) return json(200, []);
    if (request.url?.startsWith("/build")) {
      return json(400, { message: "buildkit not supported by daemon" });
    }
    return json(404, { message: "page not found" });
  });
  const sockets = new Set<import("node:stream").Duplex>();
  server.on("upgrade", (request, socket) => {
    sockets.add(socket);
    if (behaviour.session === "404") {
      requests.push(`${request.method} ${request.url?.split("?")[0]}`);
      const body = JSON.stringify({ message: "page not found" });
      socket.end(
        `HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      return;
    }
    requests.push(`${request.method} ${request.url?.split("?")[0]} upgrade`);
    // The connection stays open and silent, as a session that no build has used yet.
    socket.write("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    host: `unix://${socketPath}`,
    requests,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe("build with secrets on a daemon that cannot serve them", () => {
  let project: TestProject;

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "image.config.ts",
      [
        'import { defineConfig, Image, Secret } from "modal-image";',
        'export default defineConfig({ images: { app: Image.fromRegistry("busybox:latest")',
        '  .runCommands("true", { secrets: [Secret.fromEnv("TOKEN")] }) } });',
        "",
      ].join("\n"),
    );
  });

  afterAll(async () => {
    await project.cleanup();
  });

  it.each([
    [
      "an API older than 1.39",
      { apiVersion: "1.38", session: "upgrade", build: "400" },
      /Engine API 1\.38, and BuildKit sessions need 1\.39/,
      ["GET /images/json", "GET /version"],
    ],
    [
      "no session endpoint",
      { apiVersion: "1.41", session: "404", build: "400" },
      /rejected a BuildKit session \(HTTP 404: page not found\)/,
      ["GET /images/json", "GET /version", "POST /session"],
    ],
    [
      "a refused BuildKit build",
      { apiVersion: "1.41", session: "upgrade", build: "400" },
      /rejected a BuildKit build .*buildkit not supported by daemon/,
      ["GET /images/json", "GET /version", "POST /session upgrade", "POST /build"],
    ],
  ] as const)(
    "refuses %s, says what is needed and publishes nothing",
    async (_label, behaviour, message, requests) => {
      const daemon = await fakeDaemon(behaviour);
      try {
        const result = await project.cli(["build", "--publish", "app"], {
          env: { DOCKER_HOST: daemon.host, TOKEN: "value-for-a-fake-daemon" },
        });
        expect(result.exitCode).toBe(1);
        expect(result.stdout).toBe("");
        expect(result.stderr).toMatch(message);
        expect(result.stderr).toContain("hint: secrets need a Docker Engine with BuildKit");
        // Other requests (a ping, an inspect) may come and go; these must be among them.
        expect(daemon.requests).toEqual(expect.arrayContaining([...requests]));
        if (!(requests as readonly string[]).includes("POST /build")) {
          expect(daemon.requests).not.toContain("POST /build");
        }
        const resolved = await project.cli(["resolve", "app"]);
        expect(resolved.exitCode).toBe(3);
      } finally {
        await daemon.close();
      }
    },
  );
});
