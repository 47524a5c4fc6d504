import { UsageError } from "./errors.js";

// Grammars from the OCI distribution spec (v1.1) and Docker's reference package.
const component = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const repositoryPattern = `${component}(?:/${component})*`;
const domainLabel = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainPattern = `(?:${domainLabel}(?:\\.${domainLabel})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?`;
const tagPattern = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";
const digestPattern = "sha256:[a-f0-9]{64}";

const repositoryRe = new RegExp(`^${repositoryPattern}$`);
const tagRe = new RegExp(`^${tagPattern}$`);
const digestRe = new RegExp(`^${digestPattern}$`);
const registryRe = new RegExp(`^(${domainPattern})(?:/(${repositoryPattern}))?$`);
const imageReferenceRe = new RegExp(
  `^(?:(${domainPattern})/)?(${repositoryPattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`,
);

/** Docker rejects repository names longer than this, registry host included. */
export const maxRepositoryLength = 255;

export const nameGrammar =
  "lowercase [a-z0-9]+ components joined by '.', '_', '__' or '-', optionally split by '/'";
export const tagGrammar = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

export const defaultTag = "latest";

/** Tags this tool pushes for its own use start with this; names cannot use such tags. */
export const reservedTagPrefix = "_";

/** A parsed `NAME[:TAG]`. */
export interface NameRef {
  name: string;
  tag: string;
}

export function isValidName(name: string): boolean {
  return name.length <= maxRepositoryLength && repositoryRe.test(name);
}

export function isValidTag(tag: string): boolean {
  return tagRe.test(tag);
}

export function isDigest(value: string): boolean {
  return digestRe.test(value);
}

/** Checks a NAME and throws a UsageError that quotes the grammar. */
export function assertName(name: string, kind = "name"): void {
  if (!isValidName(name)) {
    throw new UsageError(`invalid ${kind} ${JSON.stringify(name)}`, {
      hint: `a ${kind} is ${nameGrammar}, at most ${maxRepositoryLength} characters, for example "analytics-runtime" or "team/app"`,
    });
  }
}

/** Checks a TAG and throws a UsageError that quotes the grammar. */
export function assertTag(tag: string): void {
  if (tag.startsWith(reservedTagPrefix)) {
    throw new UsageError(
      `invalid tag ${JSON.stringify(tag)}: tags starting with "${reservedTagPrefix}" are reserved`,
      {
        hint: `modal-image pushes its own build tags with that prefix; choose a tag such as "${tag.slice(1) || "latest"}"`,
      },
    );
  }
  if (!isValidTag(tag)) {
    throw new UsageError(`invalid tag ${JSON.stringify(tag)}`, {
      hint: `a tag matches ${tagGrammar}, for example "latest" or "v1.2"`,
    });
  }
}

/** Checks the operand of `tags`: a NAME without a tag. */
export function assertTagsOperand(name: string): void {
  if (name.includes(":")) {
    throw new UsageError(`invalid name ${JSON.stringify(name)}: tags takes a NAME without a tag`, {
      hint: `list the tags with: modal-image tags ${splitNameRef(name).name}`,
    });
  }
  assertName(name);
}

/** Splits `NAME[:TAG]` at the tag's colon without checking either part. */
export function splitNameRef(input: string): NameRef {
  const colon = input.lastIndexOf(":");
  if (colon <= input.lastIndexOf("/")) return { name: input, tag: defaultTag };
  return { name: input.slice(0, colon), tag: input.slice(colon + 1) };
}

/** Parses `NAME[:TAG]`, with the tag defaulting to `latest`. Never rewrites the input. */
export function parseNameRef(input: string): NameRef {
  const { name, tag } = splitNameRef(input);
  try {
    assertName(name);
    assertTag(tag);
  } catch (error) {
    // "x:y:z" fails on its name "x:y"; the message should show what the user typed.
    if (error instanceof UsageError && name !== input) {
      throw new UsageError(`${error.message} in ${JSON.stringify(input)}`, {
        hint: `write NAME[:TAG]; ${error.hint ?? ""}`.replace(/; $/, ""),
      });
    }
    throw error;
  }
  return { name, tag };
}

export function formatNameRef(ref: NameRef): string {
  return `${ref.name}:${ref.tag}`;
}

/** A registry location such as `127.0.0.1:5000` or `registry.example.com/team`. */
export interface RegistryLocation {
  /** `host[:port]`, the key used for credentials. */
  host: string;
  /** Repository path under the host that every image name is appended to; may be empty. */
  namespace: string;
}

export function parseRegistry(input: string, source = "registry"): RegistryLocation {
  const trimmed = input.replace(/\/+$/, "");
  const match = registryRe.exec(trimmed);
  if (!match || trimmed.length > maxRepositoryLength) {
    throw new UsageError(`invalid ${source} ${JSON.stringify(input)}`, {
      hint: `a registry is HOST[:PORT][/PATH] with a lowercase repository path, for example "127.0.0.1:5000/team"`,
    });
  }
  return { host: match[1] ?? "", namespace: match[2] ?? "" };
}

/** Returns the repository an image named `name` is pushed to, such as `127.0.0.1:5000/team/app`. */
export function repositoryFor(registry: RegistryLocation, name: string): string {
  const path = registry.namespace ? `${registry.namespace}/${name}` : name;
  const repository = `${registry.host}/${path}`;
  if (repository.length > maxRepositoryLength) {
    throw new UsageError(
      `repository ${JSON.stringify(repository)} is longer than ${maxRepositoryLength} characters`,
      {
        hint: "use a shorter image name or registry path",
      },
    );
  }
  return repository;
}

/** A parsed Docker image reference, as `fromRegistry` takes. */
export interface ImageReference {
  domain: string | undefined;
  path: string;
  tag: string | undefined;
  digest: string | undefined;
}

export function parseImageReference(input: string): ImageReference | undefined {
  const match = imageReferenceRe.exec(input);
  if (!match) return undefined;
  const [, domainOrPath, path = "", tag, digest] = match;
  // Docker's reference package (distribution/reference) limits the whole name, host included.
  const name = domainOrPath === undefined ? path : `${domainOrPath}/${path}`;
  if (name.length > maxRepositoryLength) return undefined;
  // Docker reads the first component as a registry host only if it has a '.', a ':' or is "localhost".
  if (domainOrPath !== undefined && !/[.:]|^localhost$/.test(domainOrPath)) {
    if (!repositoryRe.test(domainOrPath)) return undefined;
    return { domain: undefined, path: `${domainOrPath}/${path}`, tag, digest };
  }
  return { domain: domainOrPath, path, tag, digest };
}

/** A pinned reference: `REPOSITORY@sha256:...` or a local image ID `sha256:...`. */
export interface PinnedReference {
  repository: string | undefined;
  digest: string;
}

export function parsePinnedReference(input: string): PinnedReference | undefined {
  if (isDigest(input)) return { repository: undefined, digest: input };
  const at = input.lastIndexOf("@");
  if (at < 0) return undefined;
  const repository = input.slice(0, at);
  const digest = input.slice(at + 1);
  const parsed = parseImageReference(repository);
  if (!isDigest(digest) || !parsed || parsed.tag || parsed.digest) return undefined;
  return { repository, digest };
}

export function formatPinnedReference(ref: PinnedReference): string {
  return ref.repository ? `${ref.repository}@${ref.digest}` : ref.digest;
}
