/**
 * The immutable, chainable image definition. Methods record steps and never throw on bad values:
 * `validateImage` reports every problem at once, with its path, before anything is built.
 */

export interface PipInstallOptions {
  /** Base URL of the package index, passed as `--index-url`. */
  indexUrl?: string;
  /** Extra package index URLs, passed as `--extra-index-url`. */
  extraIndexUrl?: string | readonly string[];
  /** Pages or directories with archives, passed as `--find-links`. */
  findLinks?: string | readonly string[];
  /** Allow pre-release versions (`--pre`). @default false */
  pre?: boolean;
}

export interface UvPipInstallOptions extends PipInstallOptions {
  /** Tag of the `ghcr.io/astral-sh/uv` image that provides the uv binary. */
  uvVersion?: string;
}

export interface AddLocalDirOptions {
  /**
   * Patterns in `.dockerignore` syntax, applied after the directory's own `.dockerignore`,
   * or a predicate that gets each path relative to the directory (POSIX separators).
   */
  ignore?: readonly string[] | ((relativePath: string) => boolean);
}

export interface DebianSlimOptions {
  /** Python minor or patch version, such as "3.12" or "3.12.7". @default "3.12" */
  pythonVersion?: string;
}

export interface FromDockerfileOptions {
  /** Directory sent as the Dockerfile's build context. @default the Dockerfile's directory */
  contextDir?: string;
}

import type { RunCommandsOptions, SecretSpec } from "./secret.js";

export type { RunCommandsOptions, SecretOptions, SecretSpec } from "./secret.js";

// Methods keep values of the wrong type as they are, so that validateImage can report them.
function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function copyList<T>(value: readonly T[]): readonly T[] {
  return Array.isArray(value) ? [...(value as readonly T[])] : value;
}

/** Returns an option that takes one string or several as a list. */
export function optionList(value: string | readonly string[] | undefined): readonly string[] {
  if (value === undefined) return [];
  if (typeof value === "string") return [value];
  return value;
}

export type ImageBase =
  | { kind: "debianSlim"; pythonVersion: string; options: DebianSlimOptions }
  | { kind: "fromRegistry"; reference: string }
  | {
      kind: "fromDockerfile";
      path: string;
      contextDir: string | undefined;
      options: FromDockerfileOptions;
    }
  | { kind: "fromName"; name: string }
  | { kind: "fromScratch" };

export type ImageStep =
  | { kind: "aptInstall"; packages: readonly string[] }
  | { kind: "pipInstall"; packages: readonly string[]; options: PipInstallOptions }
  | { kind: "uvPipInstall"; packages: readonly string[]; options: UvPipInstallOptions }
  | { kind: "pipInstallFromRequirements"; localPath: string; options: PipInstallOptions }
  | { kind: "runCommands"; commands: readonly string[]; options: RunCommandsOptions }
  | { kind: "dockerfileCommands"; commands: readonly string[] }
  | { kind: "env"; vars: Readonly<Record<string, string>> }
  | { kind: "workdir"; path: string }
  | { kind: "entrypoint"; args: readonly string[] }
  | { kind: "cmd"; args: readonly string[] }
  | { kind: "addLocalFile"; localPath: string; remotePath: string }
  | { kind: "addLocalDir"; localPath: string; remotePath: string; options: AddLocalDirOptions };

export type ImageStepKind = ImageStep["kind"];

type PackageArgs<Options> = ReadonlyArray<string | readonly string[] | Options>;

/** Splits Modal-style variadic arguments into a flat list and an optional trailing options object. */
function splitPackageArgs<Options extends object>(
  args: PackageArgs<Options>,
): { values: string[]; options: Options } {
  const last = args.at(-1);
  const hasOptions = typeof last === "object" && last !== null && !Array.isArray(last);
  const values = (hasOptions ? args.slice(0, -1) : args).flat() as unknown[];
  // Non-strings are kept as they are so validation can report them with their position.
  return { values: values as string[], options: (hasOptions ? last : {}) as Options };
}

// A registered symbol, so an Image made by another copy of this package (a config's own
// node_modules, or a loader that evaluates the package again) is still recognised.
const imageBrand = Symbol.for("modal-image.Image");

export class Image {
  readonly [imageBrand] = true;
  readonly base: ImageBase;
  readonly steps: readonly ImageStep[];

  private constructor(base: ImageBase, steps: readonly ImageStep[]) {
    this.base = base;
    this.steps = steps;
    Object.freeze(this);
  }

  /** A Debian bookworm slim image with Python, from the official `python:<version>-slim-bookworm`. */
  static debianSlim(options: DebianSlimOptions = {}): Image {
    const pythonVersion = (isPlainObject(options) ? options.pythonVersion : undefined) ?? "3.12";
    return new Image({ kind: "debianSlim", pythonVersion, options }, []);
  }

  /** Any image reference a registry serves, such as `debian:bookworm-slim` or `repo@sha256:...`. */
  static fromRegistry(reference: string): Image {
    return new Image({ kind: "fromRegistry", reference }, []);
  }

  /** The final stage of an existing Dockerfile; later steps are appended to it. */
  static fromDockerfile(path: string, options: FromDockerfileOptions = {}): Image {
    const contextDir = isPlainObject(options) ? options.contextDir : undefined;
    return new Image({ kind: "fromDockerfile", path, contextDir, options }, []);
  }

  /** A published image, pinned to the digest its name has when the build starts. */
  static fromName(name: string): Image {
    return new Image({ kind: "fromName", name }, []);
  }

  /** An empty image. */
  static fromScratch(): Image {
    return new Image({ kind: "fromScratch" }, []);
  }

  private with(step: ImageStep): Image {
    return new Image(this.base, [...this.steps, step]);
  }

  /** Installs Debian packages with apt-get, in the order given. */
  aptInstall(...packages: ReadonlyArray<string | readonly string[]>): Image {
    return this.with({ kind: "aptInstall", packages: packages.flat() });
  }

  /** Installs Python packages with pip; the list is sorted so the Dockerfile is stable. */
  pipInstall(...args: PackageArgs<PipInstallOptions>): Image {
    const { values, options } = splitPackageArgs(args);
    return this.with({ kind: "pipInstall", packages: values, options });
  }

  /** Installs Python packages with uv; the list is sorted so the Dockerfile is stable. */
  uvPipInstall(...args: PackageArgs<UvPipInstallOptions>): Image {
    const { values, options } = splitPackageArgs(args);
    return this.with({ kind: "uvPipInstall", packages: values, options });
  }

  /** Installs the packages a local requirements file lists. */
  pipInstallFromRequirements(localPath: string, options: PipInstallOptions = {}): Image {
    return this.with({ kind: "pipInstallFromRequirements", localPath, options });
  }

  /**
   * Runs each command with `/bin/sh -c`, one layer each. A last argument `{ secrets }` makes
   * secrets readable by these commands only, and never stores them in the image.
   */
  runCommands(...args: PackageArgs<RunCommandsOptions>): Image {
    const { values, options } = splitPackageArgs(args);
    const copied = isPlainObject(options) ? { ...options } : options;
    const secrets: unknown = copied.secrets;
    if (Array.isArray(secrets)) copied.secrets = [...(secrets as SecretSpec[])];
    return this.with({ kind: "runCommands", commands: values, options: copied });
  }

  /** Appends raw Dockerfile instructions, written by the config's author. */
  dockerfileCommands(...commands: ReadonlyArray<string | readonly string[]>): Image {
    return this.with({ kind: "dockerfileCommands", commands: commands.flat() });
  }

  /** Sets environment variables, byte for byte. */
  env(vars: Readonly<Record<string, string>>): Image {
    return this.with({ kind: "env", vars: isPlainObject(vars) ? { ...vars } : vars });
  }

  /** Sets the working directory of later steps and of containers. */
  workdir(path: string): Image {
    return this.with({ kind: "workdir", path });
  }

  /** Sets the entrypoint in exec form. */
  entrypoint(args: readonly string[]): Image {
    return this.with({ kind: "entrypoint", args: copyList(args) });
  }

  /** Sets the default command in exec form. */
  cmd(args: readonly string[]): Image {
    return this.with({ kind: "cmd", args: copyList(args) });
  }

  /**
   * Copies one local file to an absolute path in the image. A remote path that ends in `/`
   * is a directory, and the file keeps its name.
   */
  addLocalFile(localPath: string, remotePath: string): Image {
    return this.with({ kind: "addLocalFile", localPath, remotePath });
  }

  /** Copies a local directory's contents to an absolute directory in the image. */
  addLocalDir(localPath: string, remotePath: string, options: AddLocalDirOptions = {}): Image {
    const copied = isPlainObject(options) ? { ...options } : options;
    return this.with({ kind: "addLocalDir", localPath, remotePath, options: copied });
  }
}

export function isImage(value: unknown): value is Image {
  return typeof value === "object" && value !== null && imageBrand in value;
}
