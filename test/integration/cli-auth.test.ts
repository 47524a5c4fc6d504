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
import { listTags, manifestDigest } from "../helpers/registry.js";
import {
  authRegistry,
  readAuthRegistryCredentials,
  type RegistryCredentials,
} from "../helpers/stack.js";

describe.skipIf(skipIntegration)("push to a registry with auth", () => {
  let project: TestProject;
  let credentials: RegistryCredentials;
  const name = uniqueName("auth");

  beforeAll(async () => {
    credentials = await readAuthRegistryCredentials();
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest").env({ AUTH: "1" }) }`,
        authRegistry,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(`${authRegistry}/${name}`);
    await project.cleanup();
  });

  async function dockerConfig(dirName: string, config: object): Promise<string> {
    const dir = path.join(project.dir, dirName);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, "config.json"), JSON.stringify(config));
    return dir;
  }

  it("fails clearly without credentials and changes no name", async () => {
    const empty = await dockerConfig("no-creds", {});
    const result = await project.cli(["build", "--publish", name], {
      env: { DOCKER_CONFIG: empty },
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(authRegistry);
    expect(result.stderr).toMatch(
      /no basic auth credentials|unauthorized|authentication required|requires a login/i,
    );
    expect(result.stderr).not.toContain(credentials.password);
    expect((await project.cli(["resolve", name])).exitCode).toBe(3);
    expect(await listTags(authRegistry, name, credentials)).toEqual([]);
  });

  it("fails clearly with a wrong password and prints no secret", async () => {
    const wrongPassword = "wrong-password-that-must-not-be-printed";
    const auth = Buffer.from(`${credentials.username}:${wrongPassword}`).toString("base64");
    const dir = await dockerConfig("wrong-creds", { auths: { [authRegistry]: { auth } } });
    const result = await project.cli(["build", "--publish", name, "--verbose"], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(authRegistry);
    expect(result.stderr + result.stdout).not.toContain(wrongPassword);
    expect(result.stderr + result.stdout).not.toContain(auth);
  });

  it("pushes with credentials from auths", async () => {
    const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
    const dir = await dockerConfig("creds", { auths: { [authRegistry]: { auth } } });
    const result = await project.cli(["build", "--publish", name, "--verbose"], {
      env: { DOCKER_CONFIG: dir },
    });
    expect(result.stderr).not.toContain("error:");
    expect(result.exitCode).toBe(0);
    expect(result.stderr + result.stdout).not.toContain(credentials.password);
    const digest = result.stdout.trim().split("@")[1]!;
    expect(await manifestDigest(authRegistry, name, digest, credentials)).toBe(digest);
  });

  it("pushes with credentials from a credential helper", async () => {
    const bin = path.join(project.dir, "helper-bin");
    await fs.mkdir(bin, { recursive: true });
    const helper = path.join(bin, "docker-credential-modaltest");
    const secret = JSON.stringify({ Username: credentials.username, Secret: credentials.password });
    await fs.writeFile(helper, `#!/bin/sh\nread server\ncat <<'EOF'\n${secret}\nEOF\n`, {
      mode: 0o755,
    });
    const dir = await dockerConfig("helper", { credHelpers: { [authRegistry]: "modaltest" } });
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest").env({ AUTH: "2" }) }`,
        authRegistry,
      ),
    );
    const result = await project.cli(["build", "--publish", `${name}:helper`], {
      env: { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(result.stderr).not.toContain("error:");
    expect(result.exitCode).toBe(0);
    expect(await listTags(authRegistry, name, credentials)).toHaveLength(2);
  });

  it("fails clearly when the credential helper is missing", async () => {
    const dir = await dockerConfig("missing-helper", {
      credHelpers: { [authRegistry]: "doesnotexist" },
    });
    const result = await project.cli(["build"], { env: { DOCKER_CONFIG: dir } });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("docker-credential-doesnotexist");
    expect(result.stderr).not.toContain("    at ");
  });
});
