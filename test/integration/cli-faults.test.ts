import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type CliResult,
  type TestProject,
} from "../helpers/cli.js";
import { removeImages } from "../helpers/docker.js";
import {
  closedPort,
  startDyingDaemon,
  startFailingRegistry,
  startRegistryProxy,
  type FaultServer,
} from "../helpers/fault-servers.js";
import { listTags } from "../helpers/registry.js";
import {
  authRegistry,
  openRegistry,
  readAuthRegistryCredentials,
  type RegistryCredentials,
} from "../helpers/stack.js";

/** A fault must be reported within this time; a hang fails the test. */
const faultTimeoutMs = 20_000;

/** Checks that a failed run printed exactly one error with a hint, no stack and no result. */
function expectOneError(result: CliResult, exitCode: number): void {
  expect(result.exitCode, result.stderr).toBe(exitCode);
  expect(result.stdout).toBe("");
  const lines = result.stderr.split("\n");
  expect(lines.filter((line) => line.startsWith("error:"))).toHaveLength(1);
  expect(lines.filter((line) => line.startsWith("hint:"))).toHaveLength(1);
  expect(result.stderr).not.toContain("    at ");
}

function imageConfig(name: string, marker: string, registry?: string): string {
  return configText(
    `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
      .runCommands("echo ${marker} > /marker") }`,
    registry,
  );
}

/** Writes `config.json` into a new directory of the project and returns the directory. */
async function dockerConfig(project: TestProject, label: string, config: object): Promise<string> {
  const dir = path.join(project.dir, `docker-config-${label}`);
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe.skipIf(skipIntegration)("daemon faults", () => {
  let project: TestProject;
  let published: string;
  const name = uniqueName("daemon-fault");

  beforeAll(async () => {
    project = await createProject();
    await project.write("image.config.ts", imageConfig(name, "published"));
    const built = await project.cli(["build", "--publish", name]);
    expect(built.exitCode, built.stderr).toBe(0);
    published = built.stdout;
    // A build of this definition that succeeded would move the name.
    await project.write("image.config.ts", imageConfig(name, "changed"));
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  async function expectNameUnchanged(): Promise<void> {
    const resolved = await project.cli(["resolve", name]);
    expect(resolved.stdout).toBe(published);
  }

  it("reports a socket with no daemon", async () => {
    const socket = path.join(project.dir, "no-daemon.sock");
    const result = await project.cli(["build", "--publish", name], {
      env: { DOCKER_HOST: `unix://${socket}` },
      timeout: faultTimeoutMs,
    });
    expectOneError(result, 1);
    expect(result.stderr).toContain(`cannot connect to the Docker daemon at unix://${socket}`);
    expect(result.stderr).toContain("start the Docker daemon");
    await expectNameUnchanged();
  });

  it("reports a closed TCP port", async () => {
    const address = await closedPort();
    const result = await project.cli(["build", "--publish", name], {
      env: { DOCKER_HOST: `tcp://${address}` },
      timeout: faultTimeoutMs,
    });
    expectOneError(result, 1);
    expect(result.stderr).toContain(`cannot connect to the Docker daemon at tcp://${address}`);
    expect(result.stderr).toContain("ECONNREFUSED");
    await expectNameUnchanged();
  });

  it("reports a closed SSH port", async () => {
    const address = await closedPort();
    const host = `ssh://nobody@${address}`;
    const result = await project.cli(["build", "--publish", name], {
      env: { DOCKER_HOST: host },
      timeout: faultTimeoutMs,
    });
    expectOneError(result, 1);
    expect(result.stderr).toContain(`cannot connect to the Docker daemon at ${host}`);
    expect(result.stderr).toContain("ECONNREFUSED");
    expect(result.stderr).not.toContain("DeprecationWarning");
    await expectNameUnchanged();
  });

  it("rejects an invalid DOCKER_HOST before contacting anything", async () => {
    // The registry records every request, so any contact before the check would show.
    const registry = await startFailingRegistry(500);
    try {
      for (const value of ["banana", "tcp://", "tcp://127.0.0.1", "unix://relative.sock"]) {
        for (const args of [
          ["build", "--publish", name, "--registry", registry.address],
          ["run", name, "--index", "registry", "--registry", registry.address],
          ["publish", `sha256:${"0".repeat(64)}`, `${name}:copy`],
        ]) {
          const result = await project.cli(args, { env: { DOCKER_HOST: value } });
          expectOneError(result, 2);
          expect(result.stderr).toContain(`invalid DOCKER_HOST ${JSON.stringify(value)}`);
          expect(result.stderr).toContain("tcp://HOST:PORT");
          expect(result.stderr).toContain("unix:///path/to/docker.sock");
        }
      }
      expect(registry.requests).toEqual([]);
    } finally {
      await registry.close();
    }
    await expectNameUnchanged();
  });

  it("reports a daemon that dies mid-build", async () => {
    const daemon = await startDyingDaemon();
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
          .runCommands("echo dying > /marker; sleep 300") }`,
      ),
    );
    try {
      const result = await project.cli(["build", "--publish", name], {
        env: { DOCKER_HOST: daemon.address },
        timeout: faultTimeoutMs,
      });
      expect(daemon.cutRequests).toHaveLength(1);
      expectOneError(result, 1);
      expect(result.stderr).toContain("the Docker daemon closed the connection before the end");
      expect(result.stderr).toContain("docker info");
    } finally {
      await daemon.close();
      await project.write("image.config.ts", imageConfig(name, "changed"));
    }
    await expectNameUnchanged();
  });
});

/** A broken registry, with the settings that make the CLI use it. */
interface RegistryFault {
  registry: string;
  env: Record<string, string>;
  /** Text the error must contain. */
  expected: string;
  /** Text that must not appear in the output. */
  secret?: string;
}

describe.skipIf(skipIntegration)("registry faults", () => {
  let project: TestProject;
  let credentials: RegistryCredentials;
  let published: string;
  let publishedDigest: string;
  const servers: FaultServer[] = [];
  const name = uniqueName("registry-fault");

  beforeAll(async () => {
    project = await createProject();
    credentials = await readAuthRegistryCredentials();
    await project.write("image.config.ts", imageConfig(name, "published", openRegistry));
    const built = await project.cli(["build", "--publish", name]);
    expect(built.exitCode, built.stderr).toBe(0);
    published = built.stdout;
    publishedDigest = published.trim().split("@")[1]!;
    await project.write("image.config.ts", imageConfig(name, "changed", openRegistry));
  });

  afterAll(async () => {
    for (const server of servers) await server.close();
    // A build that failed only at the push would leave an image tagged for the broken registry.
    const faultRepositories = [...faults.values()].map(
      async (fault) => `${(await fault).registry}/${name}`,
    );
    await removeImages(`${openRegistry}/${name}`, name, ...(await Promise.all(faultRepositories)));
    await project.cleanup();
  });

  /** Each fault, set up once on first use, because the project exists only after beforeAll. */
  const faultSetups: Array<{ label: string; setup: () => Promise<RegistryFault> }> = [
    {
      label: "a registry that is down",
      setup: async () => ({ registry: await closedPort(), env: {}, expected: "ECONNREFUSED" }),
    },
    {
      label: "a registry returning 500",
      setup: async () => {
        const failing = await startFailingRegistry(500);
        servers.push(failing);
        return { registry: failing.address, env: {}, expected: "HTTP 500" };
      },
    },
    {
      label: "rejected credentials",
      setup: async () => {
        const wrongPassword = `wrong-${path.basename(project.dir)}`;
        const auth = Buffer.from(`${credentials.username}:${wrongPassword}`).toString("base64");
        const dir = await dockerConfig(project, "wrong", { auths: { [authRegistry]: { auth } } });
        return {
          registry: authRegistry,
          env: { DOCKER_CONFIG: dir },
          expected: "rejected the credentials",
          secret: wrongPassword,
        };
      },
    },
    {
      label: "a missing credential helper",
      setup: async () => {
        const config = { credHelpers: { [authRegistry]: "absent" } };
        return {
          registry: authRegistry,
          env: { DOCKER_CONFIG: await dockerConfig(project, "missing", config) },
          expected: `docker-credential-absent for registry ${authRegistry} was not found on PATH`,
        };
      },
    },
    {
      label: "a failing credential helper",
      setup: async () => {
        const bin = path.join(project.dir, "helper-bin");
        await fs.mkdir(bin, { recursive: true });
        await fs.writeFile(
          path.join(bin, "docker-credential-locked"),
          "#!/bin/sh\necho 'the keychain is locked' >&2\nexit 1\n",
          { mode: 0o755 },
        );
        const config = { credHelpers: { [authRegistry]: "locked" } };
        return {
          registry: authRegistry,
          env: {
            DOCKER_CONFIG: await dockerConfig(project, "locked", config),
            PATH: `${bin}:${process.env.PATH}`,
          },
          expected: `docker-credential-locked for registry ${authRegistry} exited with code 1: the keychain is locked`,
        };
      },
    },
  ];
  const faults = new Map<string, Promise<RegistryFault>>();

  const commands: Array<{ label: string; args: (registry: string) => string[] }> = [
    { label: "build", args: (registry) => ["build", "--publish", name, "--registry", registry] },
    {
      label: "build --force",
      args: (registry) => ["build", "--force", "--publish", name, "--registry", registry],
    },
    {
      label: "resolve",
      args: (registry) => ["resolve", name, "--index", "registry", "--registry", registry],
    },
    {
      label: "tags",
      args: (registry) => ["tags", name, "--index", "registry", "--registry", registry],
    },
    {
      label: "publish",
      args: (registry) => [
        "publish",
        `${openRegistry}/${name}@${publishedDigest}`,
        `${name}:copy`,
        "--index",
        "registry",
        "--registry",
        registry,
      ],
    },
  ];

  for (const { label, setup } of faultSetups) {
    for (const command of commands) {
      it(`${command.label} with ${label}`, async () => {
        if (!faults.has(label)) faults.set(label, setup());
        const fault = await faults.get(label)!;
        const result = await project.cli(command.args(fault.registry), {
          env: fault.env,
          timeout: faultTimeoutMs,
        });
        expectOneError(result, 1);
        expect(result.stderr).toContain(fault.registry);
        expect(result.stderr).toContain(fault.expected);
        if (fault.secret) expect(result.stderr).not.toContain(fault.secret);
        expect((await project.cli(["resolve", name])).stdout).toBe(published);
        expect((await project.cli(["resolve", `${name}:copy`])).exitCode).toBe(3);
      });
    }
  }

  it("reports a push the registry denies", async () => {
    // The proxy passes the version check and the cache lookup, then denies every blob upload,
    // so the error comes from the daemon's push.
    const proxy = await startRegistryProxy(
      (method, url) => method === "POST" && url.includes("/blobs/uploads/"),
      { kind: "answer", status: 403, code: "DENIED", message: "requested access is denied" },
    );
    const tagsBefore = await listTags(openRegistry, name);
    try {
      const result = await project.cli(["build", "--publish", name, "--registry", proxy.address], {
        timeout: faultTimeoutMs,
      });
      expectOneError(result, 1);
      expect(result.stderr).toContain(`push of ${proxy.address}/${name}`);
      expect(result.stderr).toContain("denied");
      expect(result.stderr).toContain(`docker login ${proxy.address}`);
    } finally {
      await proxy.close();
      await removeImages(`${proxy.address}/${name}`);
    }
    expect((await project.cli(["resolve", name])).stdout).toBe(published);
    expect(await listTags(openRegistry, name)).toEqual(tagsBefore);
  });
});

describe.skipIf(skipIntegration)("--debug", () => {
  let project: TestProject;
  let credentials: RegistryCredentials;
  const name = uniqueName("debug");

  beforeAll(async () => {
    project = await createProject();
    credentials = await readAuthRegistryCredentials();
    await project.write("image.config.ts", imageConfig(name, "debug", authRegistry));
  });

  afterAll(async () => {
    await removeImages(`${authRegistry}/${name}`);
    await project.cleanup();
  });

  it("logs requests without credentials", async () => {
    const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
    const dir = await dockerConfig(project, "debug", { auths: { [authRegistry]: { auth } } });
    const result = await project.cli(["build", "--force", "--publish", name, "--debug"], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const registryLine = (method: string, target: string, status: number) =>
      new RegExp(
        `^debug: registry ${authRegistry}: ${method} ${target} -> ${status} \\(\\d+ ms\\)$`,
        "m",
      );
    expect(result.stderr).toMatch(registryLine("GET", "/v2/", 401));
    expect(result.stderr).toMatch(registryLine("GET", "/v2/", 200));
    expect(result.stderr).toMatch(/^debug: docker: POST \/build -> 200 \(\d+ ms\)$/m);
    const pushPath = `/images/${authRegistry}/${name}/push`;
    expect(result.stderr).toContain(`debug: docker: POST ${pushPath} -> 200 (`);
    const output = result.stderr + result.stdout;
    expect(output).not.toContain(credentials.password);
    expect(output).not.toContain(auth);
    expect(output.toLowerCase()).not.toContain("x-registry-auth");
    expect(output.toLowerCase()).not.toContain("authorization");
  });

  it("logs resolve on the fast path", async () => {
    const result = await project.cli([
      "resolve",
      name,
      "--index",
      "registry",
      "--registry",
      openRegistry,
      "--debug",
    ]);
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toMatch(
      new RegExp(
        `^debug: registry ${openRegistry}: HEAD /v2/${name}/manifests/latest -> 404 `,
        "m",
      ),
    );
  });

  it("prints the stack and the failed request", async () => {
    // Without a registry, the daemon is the first thing the build contacts.
    await project.write("local.config.ts", imageConfig(name, "debug"));
    const address = await closedPort();
    const result = await project.cli(["build", "-c", "local.config.ts", "--debug"], {
      env: { DOCKER_HOST: `tcp://${address}` },
      timeout: faultTimeoutMs,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/^debug: docker: GET \/images\/json -> failed: ECONNREFUSED /m);
    expect(result.stderr).toMatch(/^OperationError: cannot connect to the Docker daemon/m);
    expect(result.stderr).toContain("    at ");
  });
});
