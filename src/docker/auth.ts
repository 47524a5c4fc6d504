import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
// zod/mini, because the full API bundled 600 KB that every push compiled to check three schemas.
import * as z from "zod/mini";
import englishMessages from "zod/v4/locales/en.js";
import { OperationError, UsageError } from "../errors.js";
import { isErrnoException } from "./connection.js";

/** Credentials for one registry, in the shape of the Engine API's `X-Registry-Auth` header. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
  serveraddress: string;
}

// zod/mini has no messages of its own; these are the ones the full API uses.
z.config(englishMessages());

const authEntrySchema = z.looseObject({
  auth: z.optional(z.string()),
  username: z.optional(z.string()),
  password: z.optional(z.string()),
  identitytoken: z.optional(z.string()),
  registrytoken: z.optional(z.string()),
});

const dockerConfigSchema = z.looseObject({
  auths: z.optional(z.record(z.string(), authEntrySchema)),
  credHelpers: z.optional(z.record(z.string(), z.string())),
  credsStore: z.optional(z.string()),
});

type DockerConfig = z.infer<typeof dockerConfigSchema>;
type AuthEntry = z.infer<typeof authEntrySchema>;

/** Docker stores Docker Hub credentials under this key, whichever Hub host name is used. */
const dockerHubKey = "https://index.docker.io/v1/";
const dockerHubHosts = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/** A helper may wait for a keychain to unlock, so this is generous. */
const helperTimeoutMs = 60_000;

/** Username a credential helper returns when the secret is an identity token. */
const identityTokenUsername = "<token>";

/** The source of a registry's credentials in the Docker config. */
export interface CredentialSource {
  /** The config.json that was read. */
  file: string;
  kind: "credHelpers" | "credsStore" | "auths";
  /** The helper program, `docker-credential-NAME`, for `credHelpers` and `credsStore`. */
  helper?: string;
}

/**
 * Looks up credentials for a registry host such as `127.0.0.1:5001` in the Docker config
 * (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). Tries `credHelpers[host]`,
 * then `credsStore`, then `auths`, and moves on when one has no credentials for the host.
 * Returns undefined when no source has any.
 */
export async function resolveRegistryAuth(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RegistryAuth | undefined> {
  return (await findRegistryAuth(host, env))?.auth;
}

/** Does what resolveRegistryAuth does, and also returns which source had the credentials. */
export async function findRegistryAuth(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ auth: RegistryAuth; source: CredentialSource } | undefined> {
  const file = dockerConfigPath(env);
  const config = await readDockerConfig(file);
  if (!config) return undefined;

  const serverAddress = dockerHubHosts.has(host) ? dockerHubKey : host;

  const helperName = findEntry(config.credHelpers ?? {}, serverAddress)?.value;
  if (helperName) {
    const auth = await runCredentialHelper(helperName, serverAddress, env, file);
    const helper = `docker-credential-${helperName}`;
    if (auth) return { auth, source: { file, kind: "credHelpers", helper } };
  }

  if (config.credsStore) {
    const auth = await runCredentialHelper(config.credsStore, serverAddress, env, file);
    const helper = `docker-credential-${config.credsStore}`;
    if (auth) return { auth, source: { file, kind: "credsStore", helper } };
  }

  const entry = findEntry(config.auths ?? {}, serverAddress);
  const auth = entry ? authFromEntry(entry.key, entry.value, serverAddress, file) : undefined;
  return auth ? { auth, source: { file, kind: "auths" } } : undefined;
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const directory = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), ".docker");
  return path.join(directory, "config.json");
}

async function readDockerConfig(file: string): Promise<DockerConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (isErrnoException(error) && error.code === "ENOENT") return undefined;
    throw new UsageError(`cannot read Docker config file ${file}: ${String(error)}`, {
      hint: "fix the file's permissions, or point DOCKER_CONFIG at another directory",
      cause: error,
    });
  }

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Docker config file ${file} is not valid JSON: ${String(error)}`, {
      hint: "fix the file, or point DOCKER_CONFIG at a directory with a valid config.json",
      cause: error,
    });
  }

  const parsed = dockerConfigSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`,
    );
    throw new UsageError(`Docker config file ${file} is invalid: ${problems.join("; ")}`, {
      hint: "fix the listed fields, or point DOCKER_CONFIG at another directory",
      problems,
    });
  }
  return parsed.data;
}

/**
 * Finds the entry for a server address: the exact key first, then any key that names the same
 * host once its scheme and path are removed (`https://host/v1/` matches `host`), as Docker does.
 */
function findEntry<T>(
  entries: Record<string, T>,
  serverAddress: string,
): { key: string; value: T } | undefined {
  const exact = entries[serverAddress];
  if (exact !== undefined) return { key: serverAddress, value: exact };

  const expectedHost = hostOf(serverAddress);
  for (const [key, value] of Object.entries(entries)) {
    if (hostOf(key) === expectedHost) return { key, value };
  }
  return undefined;
}

/** Strips `http(s)://` and all from the first `/`, as Docker's ConvertToHostname does. */
function hostOf(address: string): string {
  const withoutScheme = address.replace(/^https?:\/\//, "");
  return withoutScheme.split("/")[0] ?? "";
}

function authFromEntry(
  key: string,
  entry: AuthEntry,
  serverAddress: string,
  file: string,
): RegistryAuth | undefined {
  const auth: RegistryAuth = { serveraddress: serverAddress };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new UsageError(`invalid "auth" value for ${JSON.stringify(key)} in ${file}`, {
        hint: 'an "auth" value is base64 of "username:password"; run `docker login` again',
      });
    }
    auth.username = decoded.slice(0, colon);
    auth.password = decoded.slice(colon + 1);
  } else {
    if (entry.username) auth.username = entry.username;
    if (entry.password) auth.password = entry.password;
  }
  if (entry.identitytoken) auth.identitytoken = entry.identitytoken;
  if (entry.registrytoken) auth.registrytoken = entry.registrytoken;

  // `docker login` leaves an entry such as `{}` when a credential store contains the secret.
  const hasCredentials = auth.username || auth.password || auth.identitytoken || auth.registrytoken;
  return hasCredentials ? auth : undefined;
}

const helperOutputSchema = z.looseObject({
  Username: z.optional(z.string()),
  Secret: z.optional(z.string()),
});

/**
 * Runs `docker-credential-NAME get` with the server address on stdin, the credential helper
 * protocol. Returns undefined when the helper reports that it has no credentials.
 */
async function runCredentialHelper(
  name: string,
  serverAddress: string,
  env: NodeJS.ProcessEnv,
  file: string,
): Promise<RegistryAuth | undefined> {
  const program = `docker-credential-${name}`;
  const subject = `credential helper ${program} for registry ${serverAddress}`;
  if (/[/\\]/.test(name)) {
    throw new UsageError(`invalid credential helper name ${JSON.stringify(name)} in ${file}`, {
      hint: 'a helper name is the part after "docker-credential-", with no path separators',
    });
  }

  // Loaded here, because few machines configure a credential helper.
  const { execa } = await import("execa");
  const result = await execa(program, ["get"], {
    input: serverAddress,
    env,
    extendEnv: false,
    reject: false,
    timeout: helperTimeoutMs,
  });

  if (result.failed) {
    const output = `${result.stdout}\n${result.stderr}`;
    // The helper protocol's not-found message is "credentials not found in native keychain".
    if (result.exitCode !== undefined && /credentials not found/i.test(output)) return undefined;
    throw helperFailure(subject, serverAddress, program, result, file);
  }

  let json: unknown;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    json = undefined;
  }
  const parsed = helperOutputSchema.safeParse(json);
  // The output is not quoted in the error, because it may contain the secret.
  if (!parsed.success) {
    throw new OperationError(`${subject} returned output that is not credentials JSON`, {
      hint: `check the helper with: echo ${serverAddress} | ${program} get`,
    });
  }

  const { Username: username, Secret: secret } = parsed.data;
  if (!secret) return undefined;
  if (username === identityTokenUsername) {
    return { identitytoken: secret, serveraddress: serverAddress };
  }
  return { username: username ?? "", password: secret, serveraddress: serverAddress };
}

interface FailedHelperRun {
  exitCode?: number;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  code?: string;
}

function helperFailure(
  subject: string,
  serverAddress: string,
  program: string,
  run: FailedHelperRun,
  file: string,
): OperationError {
  if (run.code === "ENOENT") {
    return new OperationError(`${subject} was not found on PATH`, {
      hint: `install ${program}, or remove it from ${file}`,
    });
  }
  if (run.timedOut) {
    return new OperationError(`${subject} timed out after ${helperTimeoutMs / 1000} s`, {
      hint: "unlock the credential store, then retry",
    });
  }
  const firstLine = (run.stderr.trim() || run.stdout.trim()).split("\n")[0]?.slice(0, 200);
  // Output that looks like JSON may be credentials, so it is not quoted.
  const detail = firstLine && !firstLine.startsWith("{") ? `: ${firstLine}` : "";
  const exit = run.exitCode === undefined ? "failed to run" : `exited with code ${run.exitCode}`;
  return new OperationError(`${subject} ${exit}${detail}`, {
    hint: `check the helper with: echo ${serverAddress} | ${program} get`,
  });
}
