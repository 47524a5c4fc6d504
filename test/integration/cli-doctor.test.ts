import fs from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configText, createProject, skipIntegration, type TestProject } from "../helpers/cli.js";
import {
  authRegistry,
  openRegistry,
  readAuthRegistryCredentials,
  type RegistryCredentials,
} from "../helpers/stack.js";

interface Check {
  check: string;
  status: "ok" | "warn" | "fail" | "skip";
  finding: string;
  fix?: string;
  details?: Record<string, unknown>;
}

const checkIds = ["config", "daemon", "base-images", "registry", "credentials", "index"];

function byId(stdout: string): Map<string, Check> {
  const checks = JSON.parse(stdout) as Check[];
  expect(checks.map((check) => check.check)).toEqual(checkIds);
  return new Map(checks.map((check) => [check.check, check]));
}

/** Returns a loopback port that nothing listens on, by binding one and closing it again. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(skipIntegration)("doctor", () => {
  let project: TestProject;
  let credentials: RegistryCredentials;
  /** Accepts connections and never responds, like a daemon or registry that hangs. */
  let silentServer: net.Server;
  const silentSockets = new Set<net.Socket>();
  let silentPort: number;

  beforeAll(async () => {
    credentials = await readAuthRegistryCredentials();
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(`{ app: Image.fromRegistry("busybox:latest") }`, openRegistry),
    );
    silentServer = net.createServer((socket) => {
      silentSockets.add(socket);
      socket.on("close", () => silentSockets.delete(socket));
    });
    await new Promise<void>((resolve) => silentServer.listen(0, "127.0.0.1", resolve));
    silentPort = (silentServer.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    for (const socket of silentSockets) socket.destroy();
    await new Promise<void>((resolve) => silentServer.close(() => resolve()));
    await project.cleanup();
  });

  async function dockerConfig(dirName: string, config: object): Promise<string> {
    const file = await project.write(`${dirName}/config.json`, JSON.stringify(config));
    return path.dirname(file);
  }

  function authsFor(password: string): object {
    const auth = Buffer.from(`${credentials.username}:${password}`).toString("base64");
    return { auths: { [authRegistry]: { auth } } };
  }

  it("passes against the open registry", async () => {
    const result = await project.cli(["doctor", "--json"]);
    expect(result.exitCode).toBe(0);
    const checks = byId(result.stdout);
    for (const id of checkIds) expect(checks.get(id)?.status, id).toBe("ok");
    expect(checks.get("config")?.details?.images).toEqual(["app"]);
    expect(checks.get("daemon")?.details?.dockerHost).toBe(
      process.env.DOCKER_HOST || "unix:///var/run/docker.sock",
    );
    expect(checks.get("daemon")?.details?.apiVersion).toMatch(/^1\.\d+$/);
    expect(checks.get("base-images")?.details?.images).toEqual(["busybox:latest"]);
    expect(checks.get("registry")?.details?.status).toBe(200);
    expect(checks.get("registry")?.details?.daemonPlainHttp).toBe(true);
    expect(checks.get("index")?.details?.kind).toBe("local");
  });

  it("prints one line per check", async () => {
    const result = await project.cli(["doctor"]);
    expect(result.exitCode).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines.map((line) => line.split(/\s+/).slice(0, 2).join(" "))).toEqual(
      checkIds.map((id) => `ok ${id}`),
    );
  });

  it("warns without a config", async () => {
    // A project of its own, because the config search would find the one above.
    const bare = await createProject();
    const result = await bare.cli(["doctor", "--json"]).finally(() => bare.cleanup());
    expect(result.exitCode).toBe(0);
    const checks = byId(result.stdout);
    expect(checks.get("config")?.status).toBe("warn");
    expect(checks.get("config")?.fix).toContain("modal-image init");
    expect(checks.get("base-images")?.status).toBe("skip");
    expect(checks.get("registry")?.status).toBe("skip");
  });

  it("fails on an invalid config", async () => {
    await project.write(
      "invalid/image.config.ts",
      configText(`{ app: Image.fromRegistry("busybox:latest").aptInstall("bad;name") }`),
    );
    const result = await project.cli(["doctor", "--json", "-c", "invalid/image.config.ts"]);
    expect(result.exitCode).toBe(1);
    const config = byId(result.stdout).get("config");
    expect(config?.status).toBe("fail");
    expect(config?.finding).toMatch(/invalid config .*: 1 problem/);
    expect(config?.details?.problems).toEqual([expect.stringContaining("aptInstall[0]")]);
  });

  it("accepts the right credentials", async () => {
    const dir = await dockerConfig("right", authsFor(credentials.password));
    const result = await project.cli(["doctor", "--json", "--registry", authRegistry], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode).toBe(0);
    const checks = byId(result.stdout);
    expect(checks.get("registry")?.details?.status).toBe(401);
    expect(checks.get("credentials")?.status).toBe("ok");
    expect(checks.get("credentials")?.finding).toContain(`auths in ${dir}/config.json`);
    expect(checks.get("credentials")?.details?.source).toBe("auths");
    expect(result.stdout + result.stderr).not.toContain(credentials.password);
  });

  it("lists the registry index with credentials", async () => {
    const dir = await dockerConfig("right-index", authsFor(credentials.password));
    const args = ["doctor", "--json", "--registry", authRegistry, "--index", "registry"];
    const result = await project.cli(args, { env: { DOCKER_CONFIG: dir } });
    expect(result.exitCode).toBe(0);
    const index = byId(result.stdout).get("index");
    expect(index?.status).toBe("ok");
    expect(index?.details?.kind).toBe("registry");
  });

  it("fails on wrong credentials without printing them", async () => {
    const wrongPassword = "doctor-wrong-password-never-printed";
    const config = authsFor(wrongPassword);
    const dir = await dockerConfig("wrong", config);
    const result = await project.cli(["doctor", "--registry", authRegistry], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/^fail +credentials +login with the credentials from auths/m);
    expect(result.stdout).toContain(`docker login ${authRegistry}`);
    const output = result.stdout + result.stderr;
    expect(output).not.toContain(wrongPassword);
    expect(output).not.toContain(
      Buffer.from(`${credentials.username}:${wrongPassword}`).toString("base64"),
    );
  });

  it("fails without credentials for a login registry", async () => {
    const dir = await dockerConfig("none", {});
    const result = await project.cli(["doctor", "--json", "--registry", authRegistry], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode).toBe(1);
    const credentialsCheck = byId(result.stdout).get("credentials");
    expect(credentialsCheck?.status).toBe("fail");
    expect(credentialsCheck?.finding).toContain("requires a login");
    expect(credentialsCheck?.fix).toContain(`docker login ${authRegistry}`);
  });

  it("fails on a missing credential helper", async () => {
    const dir = await dockerConfig("helper", { credsStore: "modal-image-test-missing" });
    const result = await project.cli(["doctor", "--json", "--registry", authRegistry], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode).toBe(1);
    const credentialsCheck = byId(result.stdout).get("credentials");
    expect(credentialsCheck?.finding).toContain(
      "docker-credential-modal-image-test-missing for registry 127.0.0.1:5001 was not found on PATH",
    );
  });

  it("fails when the daemon socket is missing", async () => {
    const socket = path.join(project.dir, "closed.sock");
    const result = await project.cli(["doctor", "--json"], {
      env: { DOCKER_HOST: `unix://${socket}` },
    });
    expect(result.exitCode).toBe(1);
    const checks = byId(result.stdout);
    expect(checks.get("daemon")?.status).toBe("fail");
    expect(checks.get("daemon")?.finding).toContain(`unix://${socket}`);
    expect(checks.get("daemon")?.details?.dockerHost).toBe(`unix://${socket}`);
    expect(checks.get("base-images")?.status).toBe("skip");
    expect(checks.get("registry")?.status).toBe("ok");
  });

  it("fails when nothing listens on the registry port", async () => {
    const port = await closedPort();
    const result = await project.cli(["doctor", "--json", "--registry", `127.0.0.1:${port}`]);
    expect(result.exitCode).toBe(1);
    const checks = byId(result.stdout);
    expect(checks.get("registry")?.status).toBe("fail");
    expect(checks.get("registry")?.finding).toContain(`http://127.0.0.1:${port}/v2/`);
    expect(checks.get("registry")?.finding).toContain("ECONNREFUSED");
    expect(checks.get("credentials")?.status).toBe("skip");
  });

  it("fails instead of hanging on a silent server", async () => {
    const address = `127.0.0.1:${silentPort}`;
    const result = await project.cli(["doctor", "--json", "--registry", address], {
      env: { DOCKER_HOST: `tcp://${address}` },
    });
    expect(result.exitCode).toBe(1);
    const checks = byId(result.stdout);
    expect(checks.get("daemon")?.finding).toContain("did not respond within 5 s");
    expect(checks.get("registry")?.finding).toContain("timed out after 5 s");
  });

  it("fails when MODAL_IMAGE_HOME is a file", async () => {
    const file = await project.write("home-file", "");
    const result = await project.cli(["doctor", "--json"], { env: { MODAL_IMAGE_HOME: file } });
    expect(result.exitCode).toBe(1);
    const index = byId(result.stdout).get("index");
    expect(index?.status).toBe("fail");
    expect(index?.finding).toContain(`${file} is not a directory`);
  });

  it("prints only problems with --quiet", async () => {
    const port = await closedPort();
    const result = await project.cli(["doctor", "-q", "--registry", `127.0.0.1:${port}`]);
    expect(result.exitCode).toBe(1);
    const statusLines = result.stdout.split("\n").filter((line) => /^\S/.test(line));
    expect(statusLines).toEqual([expect.stringMatching(/^fail +registry /)]);
    expect(result.stdout).toMatch(/^ +fix: /m);
  });

  it("rejects an invalid --registry with exit 2", async () => {
    const result = await project.cli(["doctor", "--json", "--registry", "Not A Registry"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('invalid --registry value "Not A Registry"');
    const error = (JSON.parse(result.stdout) as { error: { exitCode: number } }).error;
    expect(error.exitCode).toBe(2);
  });

  it("reports an invalid MODAL_IMAGE_REGISTRY as a failed check", async () => {
    const result = await project.cli(["doctor", "--json"], {
      env: { MODAL_IMAGE_REGISTRY: "Not A Registry" },
    });
    expect(result.exitCode).toBe(1);
    const registry = byId(result.stdout).get("registry");
    expect(registry?.finding).toBe('invalid MODAL_IMAGE_REGISTRY "Not A Registry"');
  });

  it("passes for a home not yet created", async () => {
    const home = path.join(project.dir, "new-home", "nested");
    const result = await project.cli(["doctor", "--json"], { env: { MODAL_IMAGE_HOME: home } });
    expect(result.exitCode).toBe(0);
    const index = byId(result.stdout).get("index");
    expect(index?.finding).toContain("does not exist yet");
    await expect(fs.stat(home)).rejects.toThrow(/ENOENT/);
  });
});
