import { outsideRootProblem } from "../context/local-path.js";
import {
  isValidName,
  isValidTag,
  nameGrammar,
  parseImageReference,
  splitNameRef,
  tagGrammar,
} from "../names.js";
import {
  optionList,
  type Image,
  type ImageBase,
  type ImageStep,
  type PipInstallOptions,
} from "./image.js";
import {
  envNameRe,
  secretIdGrammar,
  secretIdRe,
  secretKeys,
  secretTargetRe,
  toSecretMount,
  type SecretSpec,
} from "./secret.js";

/** One invalid value, with where it is in the definition (`aptInstall[2]`). */
export interface Problem {
  path: string;
  message: string;
}

// Debian Policy 5.6.1 (package names) and 5.6.12 (versions), with apt's `:arch`, `=version`
// and `/release` suffixes.
const aptPackageRe =
  /^[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*|\/[a-z0-9][a-z0-9.-]*)?$/;
// A PEP 508 requirement starts with a distribution name. The rest is shell-quoted, so only
// characters that cannot be encoded are rejected here.
const pipRequirementRe = /^[A-Za-z0-9][^\p{Cc}]*$/u;
const pythonVersionRe = /^3\.(?:9|1[0-4])(?:\.[0-9]{1,2})?$/;
const envKeyRe = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Returns whether a value has a control character other than tab, which a Dockerfile line cannot carry. */
function hasControlCharacter(value: string): boolean {
  return /\p{Cc}/u.test(value.replaceAll("\t", ""));
}

export const supportedPythonVersions = "3.9 to 3.14, optionally with a patch number (3.12.7)";

function describe(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  }
  return value === undefined ? "undefined" : typeof value;
}

/** Checks a string that must reach the image byte for byte; returns the problem, if any. */
function textProblem(value: unknown, options: { allowNewlines: boolean }): string | undefined {
  if (typeof value !== "string") return `expected a string, got ${describe(value)}`;
  if (value.length === 0) return "must not be empty";
  if (!value.isWellFormed()) return `${describe(value)} contains a lone UTF-16 surrogate`;
  if (value.includes("\u0000")) return `${describe(value)} contains a NUL byte`;
  if (!options.allowNewlines && hasControlCharacter(value)) {
    return `${describe(value)} contains a newline or control character, which a Dockerfile line cannot encode`;
  }
  return undefined;
}

class ProblemList {
  readonly items: Problem[] = [];

  constructor(private readonly baseDir: string | undefined) {}

  add(path: string, message: string): void {
    this.items.push({ path, message });
  }

  text(path: string, value: unknown, allowNewlines = false): void {
    const problem = textProblem(value, { allowNewlines });
    if (problem) this.add(path, problem);
  }

  /** Checks a local path, and that it stays inside the base directory when one is known. */
  localPath(path: string, value: unknown): void {
    const problem = textProblem(value, { allowNewlines: false });
    if (problem) return this.add(path, problem);
    if (this.baseDir === undefined) return;
    const outside = outsideRootProblem(this.baseDir, value as string);
    if (outside) this.add(path, outside);
  }
}

/** Reports options that are not an object, and keys the method does not take (a typo such as indexURL). */
function checkOptionKeys(
  path: string,
  options: unknown,
  allowed: readonly string[],
  problems: ProblemList,
): boolean {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    problems.add(path, `expected an options object, got ${describe(options)}`);
    return false;
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      problems.add(`${path}.${key}`, `unknown option; use ${allowed.join(", ")}`);
    }
  }
  return true;
}

const pipOptionKeys = ["indexUrl", "extraIndexUrl", "findLinks", "pre"];

function checkBase(base: ImageBase, problems: ProblemList): void {
  switch (base.kind) {
    case "debianSlim":
      if (!checkOptionKeys("debianSlim", base.options, ["pythonVersion"], problems)) return;
      if (typeof base.pythonVersion !== "string" || !pythonVersionRe.test(base.pythonVersion)) {
        problems.add(
          "debianSlim.pythonVersion",
          `unsupported Python version ${describe(base.pythonVersion)}; use ${supportedPythonVersions}`,
        );
      }
      return;
    case "fromRegistry":
      if (typeof base.reference !== "string" || !parseImageReference(base.reference)) {
        problems.add(
          "fromRegistry",
          `invalid image reference ${describe(base.reference)}; use [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], for example "debian:bookworm-slim"`,
        );
      }
      return;
    case "fromDockerfile":
      problems.localPath("fromDockerfile", base.path);
      if (!checkOptionKeys("fromDockerfile.options", base.options, ["contextDir"], problems))
        return;
      if (base.contextDir !== undefined)
        problems.localPath("fromDockerfile.contextDir", base.contextDir);
      return;
    case "fromName": {
      const ref = typeof base.name === "string" ? splitNameRef(base.name) : undefined;
      if (!ref || !isValidName(ref.name) || !isValidTag(ref.tag)) {
        problems.add(
          "fromName",
          `invalid name ${describe(base.name)}; a name is ${nameGrammar}, with an optional :TAG matching ${tagGrammar}`,
        );
      }
      return;
    }
    case "fromScratch":
      return;
  }
}

function checkList(
  path: string,
  values: readonly unknown[],
  problems: ProblemList,
  checkOne: (itemPath: string, value: unknown) => void,
): void {
  if (values.length === 0) problems.add(path, "needs at least one value");
  values.forEach((value, index) => checkOne(`${path}[${index}]`, value));
}

function checkPipOptions(
  path: string,
  options: PipInstallOptions,
  problems: ProblemList,
  allowed = pipOptionKeys,
): void {
  if (!checkOptionKeys(path, options, allowed, problems)) return;
  if (options.indexUrl !== undefined) problems.text(`${path}.indexUrl`, options.indexUrl);
  for (const key of ["extraIndexUrl", "findLinks"] as const) {
    const value: unknown = options[key];
    if (value === undefined) continue;
    if (typeof value !== "string" && !Array.isArray(value)) {
      problems.add(
        `${path}.${key}`,
        `expected a string or a list of strings, got ${describe(value)}`,
      );
      continue;
    }
    optionList(value as string | string[]).forEach((item, index) =>
      problems.text(`${path}.${key}[${index}]`, item),
    );
  }
  if (options.pre !== undefined && typeof options.pre !== "boolean") {
    problems.add(`${path}.pre`, `expected true or false, got ${describe(options.pre)}`);
  }
}

/** Linux's NAME_MAX: the daemon fails with ENAMETOOLONG on a longer file name. */
const maxFileNameBytes = 255;

/** Checks a path inside the image; returns whether the text itself was valid. */
function checkImagePath(path: string, value: unknown, problems: ProblemList): boolean {
  const problem = textProblem(value, { allowNewlines: false });
  if (problem) {
    problems.add(path, problem);
    return false;
  }
  const long = (value as string)
    .split("/")
    .find((name) => Buffer.byteLength(name) > maxFileNameBytes);
  if (long !== undefined) {
    problems.add(
      path,
      `${describe(long)} is longer than ${maxFileNameBytes} bytes, the maximum length of a file name`,
    );
  }
  return true;
}

function checkRemotePath(path: string, value: unknown, problems: ProblemList): void {
  if (checkImagePath(path, value, problems) && !(value as string).startsWith("/")) {
    problems.add(path, `remote path ${describe(value)} must be absolute, for example "/app"`);
  }
}

function checkStep(step: ImageStep, path: string, problems: ProblemList): void {
  switch (step.kind) {
    case "aptInstall":
      return checkList(path, step.packages, problems, (itemPath, value) => {
        if (typeof value !== "string" || !aptPackageRe.test(value)) {
          problems.add(
            itemPath,
            `invalid Debian package name ${describe(value)}; use NAME[:ARCH][=VERSION|/RELEASE] with a lowercase name such as "python3-numpy"`,
          );
        }
      });
    case "pipInstall":
    case "uvPipInstall":
      checkList(path, step.packages, problems, (itemPath, value) => {
        const problem = textProblem(value, { allowNewlines: false });
        if (problem) problems.add(itemPath, problem);
        else if (!pipRequirementRe.test(value as string)) {
          problems.add(
            itemPath,
            `invalid Python requirement ${describe(value)}; start with the distribution name, as in "pandas>=2" or "pkg @ https://host/pkg.whl"`,
          );
        }
      });
      checkPipOptions(
        `${path}.options`,
        step.options,
        problems,
        step.kind === "uvPipInstall" ? [...pipOptionKeys, "uvVersion"] : pipOptionKeys,
      );
      if (step.kind === "uvPipInstall" && step.options.uvVersion !== undefined) {
        if (!isValidTag(step.options.uvVersion)) {
          problems.add(
            `${path}.options.uvVersion`,
            `invalid image tag ${describe(step.options.uvVersion)}`,
          );
        }
      }
      return;
    case "pipInstallFromRequirements":
      problems.localPath(path, step.localPath);
      return checkPipOptions(`${path}.options`, step.options, problems);
    case "runCommands":
      checkList(path, step.commands, problems, (itemPath, value) =>
        problems.text(itemPath, value, true),
      );
      if (checkOptionKeys(`${path}.options`, step.options, ["secrets"], problems)) {
        checkSecrets(`${path}.options.secrets`, step.options.secrets, problems);
      }
      return;
    case "dockerfileCommands":
      return checkList(path, step.commands, problems, (itemPath, value) => {
        problems.text(itemPath, value, true);
        // Docker's parser (Engine 20.10) drops a CR at the end of a line, and editors show a
        // lone CR as a line break, so only CRLF line ends are accepted.
        if (typeof value === "string" && /\r(?!\n)/.test(value)) {
          problems.add(
            itemPath,
            `${describe(value)} contains a carriage return outside a CRLF line end; write the instruction on one line, or use LF or CRLF line ends`,
          );
        }
      });
    case "env":
      if (typeof step.vars !== "object" || step.vars === null || Array.isArray(step.vars)) {
        return problems.add(path, `expected an object of strings, got ${describe(step.vars)}`);
      }
      for (const [key, value] of Object.entries(step.vars)) {
        if (!envKeyRe.test(key)) {
          problems.add(
            `${path}.${key}`,
            `invalid variable name ${describe(key)}; use [A-Za-z_][A-Za-z0-9_]*`,
          );
        }
        if (typeof value !== "string")
          problems.add(`${path}.${key}`, `expected a string, got ${describe(value)}`);
        else if (value !== "") problems.text(`${path}.${key}`, value);
      }
      return;
    case "workdir":
      checkImagePath(path, step.path, problems);
      return;
    case "entrypoint":
    case "cmd":
      if (!Array.isArray(step.args)) {
        return problems.add(path, `expected an array of strings, got ${describe(step.args)}`);
      }
      step.args.forEach((arg, index) => {
        const problem = textProblem(arg, { allowNewlines: true });
        // An empty argument is a legal exec-form argument.
        if (problem && arg !== "") problems.add(`${path}[${index}]`, problem);
      });
      return;
    case "addLocalFile":
    case "addLocalDir":
      problems.localPath(`${path}.localPath`, step.localPath);
      checkRemotePath(`${path}.remotePath`, step.remotePath, problems);
      if (
        step.kind === "addLocalDir" &&
        checkOptionKeys(`${path}.options`, step.options, ["ignore"], problems)
      ) {
        checkIgnore(`${path}.ignore`, step.options.ignore, problems);
      }
      return;
  }
}

/** Checks one secret object; returns whether it is sound enough to compare with others. */
function checkSecret(path: string, spec: unknown, problems: ProblemList): spec is SecretSpec {
  const before = problems.items.length;
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    problems.add(
      path,
      `expected a secret such as Secret.fromEnv("NPM_TOKEN") or {"fromEnv": "NPM_TOKEN"}, got ${describe(spec)}`,
    );
    return false;
  }
  checkOptionKeys(path, spec, secretKeys, problems);
  const { id, fromEnv, fromFile, env, target } = spec as Record<string, unknown>;
  if ((fromEnv === undefined) === (fromFile === undefined)) {
    problems.add(
      path,
      'give exactly one source: fromEnv (an environment variable) or fromFile (a path), as in Secret.fromEnv("NPM_TOKEN") or Secret.fromFile("npmrc", ".npmrc")',
    );
  }
  if (fromEnv !== undefined && (typeof fromEnv !== "string" || !envNameRe.test(fromEnv))) {
    problems.add(
      `${path}.fromEnv`,
      `invalid environment variable name ${describe(fromEnv)}; use [A-Za-z_][A-Za-z0-9_]*`,
    );
  }
  if (fromFile !== undefined) problems.text(`${path}.fromFile`, fromFile);
  if (id === undefined) {
    if (fromFile !== undefined) {
      problems.add(`${path}.id`, `a fromFile secret needs an id matching ${secretIdGrammar}`);
    }
  } else if (typeof id !== "string" || !secretIdRe.test(id)) {
    problems.add(`${path}.id`, `invalid secret id ${describe(id)}; use ${secretIdGrammar}`);
  }
  if (env !== undefined && env !== false && (typeof env !== "string" || !envNameRe.test(env))) {
    problems.add(
      `${path}.env`,
      `invalid environment variable name ${describe(env)}; use [A-Za-z_][A-Za-z0-9_]*, or false for no variable`,
    );
  }
  if (target !== undefined) {
    const segments = typeof target === "string" ? target.split("/") : [];
    if (
      typeof target !== "string" ||
      !secretTargetRe.test(target) ||
      segments.includes(".") ||
      segments.includes("..")
    ) {
      problems.add(
        `${path}.target`,
        `invalid target ${describe(target)}; use an absolute path of letters, digits and _.+@~- without . or .. segments, such as "/root/.npmrc"`,
      );
    }
  }
  return problems.items.length === before;
}

/** Checks a step's secrets, and that no two of them claim the same ID, variable or file. */
function checkSecrets(path: string, secrets: unknown, problems: ProblemList): void {
  if (secrets === undefined) return;
  if (!Array.isArray(secrets)) {
    return problems.add(
      path,
      `expected a list of secrets such as [Secret.fromEnv("NPM_TOKEN")], got ${describe(secrets)}`,
    );
  }
  const seen = {
    id: new Map<string, number>(),
    env: new Map<string, number>(),
    target: new Map<string, number>(),
  };
  secrets.forEach((spec: unknown, index) => {
    const itemPath = `${path}[${index}]`;
    if (!checkSecret(itemPath, spec, problems)) return;
    const mount = toSecretMount(spec);
    const claims = { id: mount.id, env: mount.env, target: mount.target };
    // One clash is reported per secret: a repeated id usually repeats its default target too.
    for (const key of ["id", "env", "target"] as const) {
      const value = claims[key];
      if (value === undefined) continue;
      const first = seen[key].get(value);
      if (first !== undefined) {
        return problems.add(
          itemPath,
          `${key} ${JSON.stringify(value)} is also used by ${path}[${first}]; give each secret its own ${key}`,
        );
      }
    }
    for (const key of ["id", "env", "target"] as const) {
      const value = claims[key];
      if (value !== undefined) seen[key].set(value, index);
    }
  });
}

/** Reports a secret ID that two steps give different sources, which one build cannot serve. */
function checkSecretSources(
  steps: ReadonlyArray<{ step: ImageStep; path: string }>,
  problems: ProblemList,
): void {
  const sources = new Map<string, { source: string; path: string; step: string }>();
  for (const { step, path } of steps) {
    if (step.kind !== "runCommands" || !Array.isArray(step.options?.secrets)) continue;
    step.options.secrets.forEach((spec, index) => {
      const itemPath = `${path}.options.secrets[${index}]`;
      if (!checkSecret(itemPath, spec, new ProblemList(undefined))) return;
      const mount = toSecretMount(spec);
      const source = JSON.stringify(mount.source);
      const first = sources.get(mount.id);
      if (!first) sources.set(mount.id, { source, path: itemPath, step: path });
      // A repeated id within one step is reported by checkSecrets.
      else if (first.step !== path && first.source !== source) {
        problems.add(
          itemPath,
          `secret id ${JSON.stringify(mount.id)} has another source at ${first.path}; one build serves one value per id, so use another id`,
        );
      }
    });
  }
}

function checkIgnore(path: string, ignore: unknown, problems: ProblemList): void {
  if (ignore === undefined || typeof ignore === "function") return;
  if (!Array.isArray(ignore)) {
    return problems.add(
      path,
      `expected an array of patterns or a function, got ${describe(ignore)}`,
    );
  }
  ignore.forEach((pattern, index) => problems.text(`${path}[${index}]`, pattern));
}

export interface ValidateOptions {
  /** The config file's directory; when given, local paths must stay inside it. */
  baseDir?: string;
}

/** Returns every problem in an image definition; an empty list means it can be built. */
export function validateImage(image: Image, options: ValidateOptions = {}): Problem[] {
  const problems = new ProblemList(options.baseDir);
  checkBase(image.base, problems);
  const counts = new Map<string, number>();
  const paths: Array<{ step: ImageStep; path: string }> = [];
  for (const step of image.steps) {
    const seen = counts.get(step.kind) ?? 0;
    counts.set(step.kind, seen + 1);
    // A method used more than once gets its call number, so each path points at one call.
    const path = seen === 0 ? step.kind : `${step.kind}#${seen + 1}`;
    checkStep(step, path, problems);
    paths.push({ step, path });
  }
  checkSecretSources(paths, problems);
  return problems.items;
}
