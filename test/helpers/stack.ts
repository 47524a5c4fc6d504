import { readFile } from "node:fs/promises";
import { request, type RequestOptions } from "node:http";
import path from "node:path";

/** Registry without auth, started by `scripts/stack.sh up`. */
export const openRegistry = "127.0.0.1:5000";

/** Registry with htpasswd auth, started by `scripts/stack.sh up`. */
export const authRegistry = "127.0.0.1:5001";

/** Base images that `scripts/stack.sh up` makes locally, with no registry outside the machine. */
export const baseImages = ["busybox:latest", "debian:bookworm-slim"] as const;

export interface RegistryCredentials {
  registry: string;
  username: string;
  password: string;
}

/** State dir of `scripts/stack.sh`, overridden with MODAL_IMAGE_STACK_DIR. */
export function stackDir(): string {
  return process.env.MODAL_IMAGE_STACK_DIR ?? "/var/lib/modal-image-stack";
}

/** Path of the env file in which `scripts/stack.sh up` stores the auth registry's test credentials. */
export function authRegistryEnvFile(): string {
  return path.join(stackDir(), "auth-registry.env");
}

/** Reads the auth registry's address, user and password from the state dir. */
export async function readAuthRegistryCredentials(): Promise<RegistryCredentials> {
  const file = authRegistryEnvFile();
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new Error(
      `failed to read the auth registry's test credentials from ${file}; ` +
        "run `bash scripts/stack.sh up` as root",
      { cause: error },
    );
  }

  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const separator = line.indexOf("=");
    if (separator > 0) {
      values.set(line.slice(0, separator), line.slice(separator + 1).trim());
    }
  }

  const username = values.get("MODAL_IMAGE_TEST_AUTH_USER");
  const password = values.get("MODAL_IMAGE_TEST_AUTH_PASSWORD");
  if (!username || !password) {
    throw new Error(
      `${file}: MODAL_IMAGE_TEST_AUTH_USER or MODAL_IMAGE_TEST_AUTH_PASSWORD is missing; ` +
        "delete the file and run `bash scripts/stack.sh up`",
    );
  }
  const registry = values.get("MODAL_IMAGE_TEST_AUTH_REGISTRY") ?? authRegistry;
  return { registry, username, password };
}

// NOTE: a tcp:// DOCKER_HOST is reached over plain HTTP; DOCKER_TLS_VERIFY is not supported.
function dockerEndpoint(): RequestOptions {
  const dockerHost = process.env.DOCKER_HOST;
  if (!dockerHost) {
    return { socketPath: "/var/run/docker.sock" };
  }
  if (dockerHost.startsWith("unix://")) {
    return { socketPath: dockerHost.slice("unix://".length) };
  }
  const url = new URL(dockerHost.replace(/^tcp:/, "http:"));
  return { host: url.hostname, port: Number(url.port || 2375) };
}

/** Sends GET to the Docker Engine API and returns the HTTP status, or undefined when nothing responds. */
function getDockerStatus(apiPath: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const options = { ...dockerEndpoint(), path: apiPath, timeout: 5_000 };
    const req = request(options, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/** Sends GET /v2/ to a registry and returns the HTTP status, or undefined when nothing responds. */
async function getRegistryStatus(
  registry: string,
  credentials?: RegistryCredentials,
): Promise<number | undefined> {
  const headers = new Headers();
  if (credentials) {
    const token = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
    headers.set("authorization", `Basic ${token}`);
  }
  try {
    const response = await fetch(`http://${registry}/v2/`, {
      headers,
      signal: AbortSignal.timeout(5_000),
    });
    await response.body?.cancel();
    return response.status;
  } catch {
    return undefined;
  }
}

async function checkDaemonAndImages(): Promise<string[]> {
  if ((await getDockerStatus("/_ping")) !== 200) {
    return [`docker daemon at ${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"}`];
  }
  const missing: string[] = [];
  for (const image of baseImages) {
    if ((await getDockerStatus(`/images/${image}/json`)) !== 200) {
      missing.push(`image ${image}`);
    }
  }
  return missing;
}

async function checkOpenRegistry(): Promise<string[]> {
  const status = await getRegistryStatus(openRegistry);
  return status === 200 ? [] : [`registry ${openRegistry}`];
}

async function checkAuthRegistry(): Promise<string[]> {
  if ((await getRegistryStatus(authRegistry)) !== 401) {
    return [`registry with auth ${authRegistry}`];
  }
  let credentials: RegistryCredentials;
  try {
    credentials = await readAuthRegistryCredentials();
  } catch {
    return [`test credentials in ${authRegistryEnvFile()}`];
  }
  if ((await getRegistryStatus(credentials.registry, credentials)) !== 200) {
    return [
      `registry ${credentials.registry} accepting the credentials in ${authRegistryEnvFile()}`,
    ];
  }
  return [];
}

/**
 * Checks the daemon, both registries and the base images that the integration tests need.
 * Returns one description for each missing part, and an empty list when all are up.
 */
export async function checkStack(): Promise<string[]> {
  const results = await Promise.all([
    checkDaemonAndImages(),
    checkOpenRegistry(),
    checkAuthRegistry(),
  ]);
  return results.flat();
}
