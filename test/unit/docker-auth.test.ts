import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerConfigPath, resolveRegistryAuth } from "../../src/docker/auth.js";
import { OperationError, UsageError } from "../../src/errors.js";

const host = "127.0.0.1:5001";

// A credential helper that follows the helper protocol for a few fixed server addresses and
// records every address it was asked about.
const fakeHelper = `#!/bin/sh
server=$(cat)
echo "$1 $server" >> "$(dirname "$0")/calls.log"
[ "$1" = get ] || exit 1
case "$server" in
  127.0.0.1:5001) echo '{"ServerURL":"127.0.0.1:5001","Username":"helper-user","Secret":"helper-secret"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"helper-token"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hub-user","Secret":"hub-secret"}' ;;
  broken.example) echo "keychain locked" >&2; exit 2 ;;
  json-failure.example) echo '{"Username":"u","Secret":"failed-secret"}'; exit 3 ;;
  garbage.example) echo 'Username=x Secret=leaked-secret' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`;

let root: string;
let binDir: string;
let configCount = 0;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), "modal-image-auth-"));
  binDir = path.join(root, "bin");
  await mkdir(binDir);
  const helper = path.join(binDir, "docker-credential-fake");
  await writeFile(helper, fakeHelper);
  await chmod(helper, 0o755);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes a config.json (or raw text) into a fresh DOCKER_CONFIG dir and returns the env to use. */
async function configDir(config: unknown): Promise<NodeJS.ProcessEnv> {
  configCount += 1;
  const dir = path.join(root, `config-${configCount}`);
  await mkdir(dir);
  const text = typeof config === "string" ? config : JSON.stringify(config);
  await writeFile(path.join(dir, "config.json"), text);
  return { DOCKER_CONFIG: dir, PATH: `${binDir}:/usr/bin:/bin` };
}

function base64(text: string): string {
  return Buffer.from(text).toString("base64");
}

describe("resolveRegistryAuth from auths", () => {
  const cases: Array<{
    name: string;
    auths: Record<string, unknown>;
    expected: object | undefined;
  }> = [
    {
      name: "base64 auth",
      auths: { [host]: { auth: base64("alice:pa:ss") } },
      expected: { username: "alice", password: "pa:ss", serveraddress: host },
    },
    {
      name: "username and password fields",
      auths: { [host]: { username: "bob", password: "secret" } },
      expected: { username: "bob", password: "secret", serveraddress: host },
    },
    {
      name: "identity token",
      auths: { [host]: { identitytoken: "id-token" } },
      expected: { identitytoken: "id-token", serveraddress: host },
    },
    {
      name: "auth with identity token",
      auths: { [host]: { auth: base64("carol:pw"), identitytoken: "id-token" } },
      expected: {
        username: "carol",
        password: "pw",
        identitytoken: "id-token",
        serveraddress: host,
      },
    },
    {
      name: "https URL key with path",
      auths: { [`https://${host}/v1/`]: { auth: base64("dave:pw") } },
      expected: { username: "dave", password: "pw", serveraddress: host },
    },
    {
      name: "http URL key",
      auths: { [`http://${host}`]: { auth: base64("erin:pw") } },
      expected: { username: "erin", password: "pw", serveraddress: host },
    },
    {
      name: "exact key before URL key",
      auths: {
        [`https://${host}`]: { auth: base64("url:pw") },
        [host]: { auth: base64("exact:pw") },
      },
      expected: { username: "exact", password: "pw", serveraddress: host },
    },
    {
      name: "other host only",
      auths: { "127.0.0.1:5000": { auth: base64("frank:pw") } },
      expected: undefined,
    },
    {
      name: "host with other port",
      auths: { "127.0.0.1": { auth: base64("frank:pw") } },
      expected: undefined,
    },
    { name: "empty entry", auths: { [host]: {} }, expected: undefined },
  ];

  for (const { name, auths, expected } of cases) {
    it(name, async () => {
      const env = await configDir({ auths });
      expect(await resolveRegistryAuth(host, env)).toEqual(expected);
    });
  }

  it("maps Docker Hub hosts to the index key", async () => {
    const env = await configDir({
      auths: { "https://index.docker.io/v1/": { auth: base64("hub:pw") } },
    });
    expect(await resolveRegistryAuth("docker.io", env)).toEqual({
      username: "hub",
      password: "pw",
      serveraddress: "https://index.docker.io/v1/",
    });
  });
});

describe("resolveRegistryAuth config file", () => {
  it("returns undefined without a config file", async () => {
    const env = { DOCKER_CONFIG: path.join(root, "missing"), PATH: "/usr/bin:/bin" };
    expect(await resolveRegistryAuth(host, env)).toBeUndefined();
  });

  it("uses ~/.docker without DOCKER_CONFIG", () => {
    expect(dockerConfigPath({ HOME: "/home/u" })).toBe("/home/u/.docker/config.json");
  });

  it("rejects invalid JSON naming the file", async () => {
    const env = await configDir("{ not json");
    const error = await resolveRegistryAuth(host, env).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toContain(path.join(env.DOCKER_CONFIG ?? "", "config.json"));
  });

  it("rejects auths of the wrong type", async () => {
    const env = await configDir({ auths: "nope" });
    const error = await resolveRegistryAuth(host, env).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).problems).toEqual([expect.stringContaining("auths")]);
  });

  it("rejects auth without a colon", async () => {
    const env = await configDir({ auths: { [host]: { auth: base64("no-colon") } } });
    const error = await resolveRegistryAuth(host, env).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toContain(host);
  });
});

describe("resolveRegistryAuth from credential helpers", () => {
  it("uses credHelpers for the host", async () => {
    const env = await configDir({ credHelpers: { [host]: "fake" } });
    expect(await resolveRegistryAuth(host, env)).toEqual({
      username: "helper-user",
      password: "helper-secret",
      serveraddress: host,
    });
  });

  it("matches a credHelpers URL key", async () => {
    const env = await configDir({ credHelpers: { [`https://${host}`]: "fake" } });
    expect((await resolveRegistryAuth(host, env))?.username).toBe("helper-user");
  });

  it("reads a <token> username as identity token", async () => {
    const env = await configDir({ credHelpers: { "token.example": "fake" } });
    expect(await resolveRegistryAuth("token.example", env)).toEqual({
      identitytoken: "helper-token",
      serveraddress: "token.example",
    });
  });

  it("uses credsStore", async () => {
    const env = await configDir({ credsStore: "fake" });
    expect((await resolveRegistryAuth(host, env))?.password).toBe("helper-secret");
  });

  it("asks credsStore with the Docker Hub key", async () => {
    const env = await configDir({ credsStore: "fake" });
    expect((await resolveRegistryAuth("docker.io", env))?.username).toBe("hub-user");
  });

  it("prefers credHelpers over credsStore and auths", async () => {
    const env = await configDir({
      credHelpers: { [host]: "fake" },
      credsStore: "missing-store",
      auths: { [host]: { auth: base64("file:pw") } },
    });
    expect((await resolveRegistryAuth(host, env))?.username).toBe("helper-user");
  });

  it("falls back to auths when the helper has none", async () => {
    const env = await configDir({
      credsStore: "fake",
      auths: { "other.example": { auth: base64("file:pw") } },
    });
    expect(await resolveRegistryAuth("other.example", env)).toEqual({
      username: "file",
      password: "pw",
      serveraddress: "other.example",
    });
  });

  it("returns undefined when the helper has none", async () => {
    const env = await configDir({ credHelpers: { "other.example": "fake" } });
    expect(await resolveRegistryAuth("other.example", env)).toBeUndefined();
  });

  it("skips credHelpers entries for other hosts", async () => {
    const env = await configDir({
      credHelpers: { "elsewhere.example": "missing" },
      auths: { [host]: { auth: base64("file:pw") } },
    });
    expect((await resolveRegistryAuth(host, env))?.username).toBe("file");
  });

  it("rejects a missing helper", async () => {
    const env = await configDir({ credHelpers: { [host]: "missing" } });
    const error = await resolveRegistryAuth(host, env).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("docker-credential-missing");
    expect((error as Error).message).toContain(host);
    expect((error as Error).message).toContain("not found on PATH");
  });

  it("rejects a failing helper", async () => {
    const env = await configDir({ credHelpers: { "broken.example": "fake" } });
    const error = await resolveRegistryAuth("broken.example", env).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("docker-credential-fake");
    expect((error as Error).message).toContain("broken.example");
    expect((error as Error).message).toContain("exited with code 2: keychain locked");
  });

  it("does not quote JSON output of a failing helper", async () => {
    const env = await configDir({ credHelpers: { "json-failure.example": "fake" } });
    const error = await resolveRegistryAuth("json-failure.example", env).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("exited with code 3");
    expect((error as Error).message).not.toContain("failed-secret");
  });

  it("rejects helper output that is not JSON without quoting it", async () => {
    const env = await configDir({ credHelpers: { "garbage.example": "fake" } });
    const error = await resolveRegistryAuth("garbage.example", env).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain("not credentials JSON");
    expect((error as Error).message).not.toContain("leaked-secret");
    expect((error as OperationError).hint).not.toContain("leaked-secret");
  });

  it("rejects a helper name with a path", async () => {
    const env = await configDir({ credsStore: "../fake" });
    await expect(resolveRegistryAuth(host, env)).rejects.toBeInstanceOf(UsageError);
  });
});
