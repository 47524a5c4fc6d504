import { scrypt } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { UsageError } from "../errors.js";
import type { Image } from "../image/image.js";
import { maxSecretBytes, toSecretMount, type SecretMount } from "../image/secret.js";

const scryptAsync = promisify(scrypt) as (
  password: Uint8Array,
  salt: Uint8Array,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** Every secret a definition's steps use, once per ID, in the order they first appear. */
export function secretMountsOf(image: Pick<Image, "steps">): SecretMount[] {
  const mounts = new Map<string, SecretMount>();
  for (const step of image.steps) {
    if (step.kind !== "runCommands") continue;
    for (const spec of step.options.secrets ?? []) {
      const mount = toSecretMount(spec);
      if (!mounts.has(mount.id)) mounts.set(mount.id, mount);
    }
  }
  return [...mounts.values()];
}

/**
 * A secret's value. It prints as `[secret]` in logs, JSON and `util.inspect`, so that an object
 * holding it cannot leak it by being printed.
 */
export class SecretValue {
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  /** The value's bytes. Only the build session should call this. */
  reveal(): Buffer {
    return this.#bytes;
  }

  toString(): string {
    return "[secret]";
  }

  toJSON(): string {
    return "[secret]";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "[secret]";
  }
}

function describeSource(mount: SecretMount, baseDir: string): string {
  return mount.source.kind === "env"
    ? `environment variable ${mount.source.variable}`
    : `file ${path.resolve(baseDir, mount.source.path)}`;
}

async function readOne(
  mount: SecretMount,
  options: { baseDir: string; env: NodeJS.ProcessEnv },
): Promise<Buffer | string> {
  const source = describeSource(mount, options.baseDir);
  let bytes: Buffer;
  if (mount.source.kind === "env") {
    const value = options.env[mount.source.variable];
    if (value === undefined) return `secret ${mount.id}: ${source} is not set`;
    bytes = Buffer.from(value, "utf8");
  } else {
    const file = path.resolve(options.baseDir, mount.source.path);
    try {
      bytes = await fs.readFile(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason =
        code === "ENOENT"
          ? "does not exist"
          : code === "EISDIR"
            ? "is a directory"
            : code === "EACCES"
              ? "cannot be read (permission denied)"
              : (error as Error).message;
      return `secret ${mount.id}: ${source} ${reason}`;
    }
  }
  // CI systems pass a secret that is not configured as an empty string.
  if (bytes.byteLength === 0) return `secret ${mount.id}: ${source} is empty`;
  if (bytes.byteLength > maxSecretBytes) {
    return `secret ${mount.id}: ${source} has ${bytes.byteLength} bytes, over BuildKit's limit of ${maxSecretBytes}`;
  }
  return bytes;
}

/**
 * Reads every secret value, from the environment or from files relative to `baseDir`. All
 * missing or unusable sources are reported at once, as a UsageError (exit 2), before the daemon
 * is contacted. No message contains a value.
 */
export async function readSecretValues(
  mounts: readonly SecretMount[],
  options: { baseDir: string; env: NodeJS.ProcessEnv },
): Promise<Map<string, SecretValue>> {
  const values = new Map<string, SecretValue>();
  const problems: string[] = [];
  for (const mount of mounts) {
    const result = await readOne(mount, options);
    if (typeof result === "string") problems.push(result);
    else values.set(mount.id, new SecretValue(result));
  }
  if (problems.length > 0) {
    throw new UsageError(
      problems.length === 1 ? problems[0]! : `${problems.length} secrets cannot be read`,
      {
        problems: problems.length === 1 ? [] : problems,
        hint: "set each variable, or create each file, that the config's secrets name; nothing was built",
      },
    );
  }
  return values;
}

// Names what the fingerprint is, so that it never equals any other hash of the same bytes.
const fingerprintDomain = "modal-image build secret v1";
/**
 * scrypt cost. The definition hash is published as a registry tag, so a fingerprint of a weak
 * secret must be slow to guess: about 30 ms and 16 MiB per guess.
 */
const scryptOptions = { N: 2 ** 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/**
 * Returns `scrypt-sha256:<hex>` over the value, salted with a domain string and the ID, for the
 * definition hash. The same value under the same ID always gives the same fingerprint, on any
 * machine, and the value cannot be read back from it.
 */
export async function secretFingerprint(id: string, value: SecretValue): Promise<string> {
  const salt = Buffer.from(`${fingerprintDomain}\0${id}`, "utf8");
  const key = await scryptAsync(value.reveal(), salt, 32, scryptOptions);
  return `scrypt:${key.toString("hex")}`;
}

/**
 * Returns a function that masks each secret value in a text, for build output and errors that
 * may echo what a command printed. Values shorter than 4 characters are left alone, since
 * masking them would garble ordinary output; each line of a multi-line value is masked too.
 */
export function secretRedactor(values: Iterable<SecretValue>): (text: string) => string {
  const needles = new Set<string>();
  for (const value of values) {
    const text = value.reveal().toString("utf8");
    for (const candidate of [
      text,
      text.trim(),
      ...text.split(/\r?\n/).map((line) => line.trim()),
    ]) {
      if (candidate.length >= 4) needles.add(candidate);
    }
  }
  // The longest first, so that a value is masked whole before any line of it.
  const ordered = [...needles].sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (text) => text;
  return (text) => {
    let result = text;
    for (const needle of ordered) {
      if (result.includes(needle)) result = result.split(needle).join("[secret]");
    }
    return result;
  };
}
