import path from "node:path";
import type { ContextSource } from "../context/collect.js";
import {
  optionList,
  type Image,
  type ImageStep,
  type PipInstallOptions,
  type UvPipInstallOptions,
} from "../image/image.js";
import { toSecretMount, type SecretMount } from "../image/secret.js";
import { UsageError } from "../errors.js";
import { defaultEscape, jsonArray, quoteWord, runShell, shellQuote } from "./quote.js";

/** Bumped whenever the same definition would generate different Dockerfile text. */
export const generatorVersion = 1;

/** Everything this tool adds to a build context lives under this directory. */
export const contextDir = ".modal-image";
export const dockerfilePath = `${contextDir}/Dockerfile`;

/** The uv release whose image `uvPipInstall` copies the binary from, unless a step names one. */
export const defaultUvVersion = "0.9.5";
const uvPath = "/.uv/uv";

export interface GenerateInput {
  image: Image;
  /** The pinned reference a `fromName` base resolved to. */
  baseReference?: string;
  /** The text of the Dockerfile a `fromDockerfile` base names. */
  baseDockerfileText?: string;
  /** Turns a local path from the definition into an absolute one. */
  resolveLocalPath: (localPath: string) => string;
}

export interface GeneratedDockerfile {
  /** Dockerfile text with LF line ends and a final newline. */
  text: string;
  /** Local files and directories the build context must hold, each under its own prefix. */
  sources: ContextSource[];
}

/** Reads parser directives (`# escape=`, `# syntax=`) from the top of a Dockerfile. */
export function readParserDirectives(text: string): Map<string, string> {
  const directives = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match?.[1]) break;
    directives.set(match[1].toLowerCase(), match[2] ?? "");
  }
  return directives;
}

/** Returns the image `Image.debianSlim` starts from. */
export function debianSlimImage(pythonVersion: string): string {
  return `python:${pythonVersion}-slim-bookworm`;
}

/** Returns the image whose `/uv` binary `uvPipInstall` copies. */
export function uvImage(uvVersion: string | undefined): string {
  return `ghcr.io/astral-sh/uv:${uvVersion ?? defaultUvVersion}`;
}

function fromLine(input: GenerateInput): string {
  const base = input.image.base;
  switch (base.kind) {
    case "debianSlim":
      return `FROM ${debianSlimImage(base.pythonVersion)}`;
    case "fromRegistry":
      return `FROM ${base.reference}`;
    case "fromName":
      if (!input.baseReference) throw new Error(`fromName("${base.name}") was not resolved`);
      return `FROM ${input.baseReference}`;
    case "fromScratch":
      return "FROM scratch";
    case "fromDockerfile": {
      if (input.baseDockerfileText === undefined) throw new Error("fromDockerfile text missing");
      return input.baseDockerfileText.replace(/\r\n/g, "\n").replace(/\n+$/, "");
    }
  }
}

function pipFlags(options: PipInstallOptions): string[] {
  const flags: string[] = [];
  if (options.indexUrl) flags.push("--index-url", shellQuote(options.indexUrl));
  for (const url of optionList(options.extraIndexUrl))
    flags.push("--extra-index-url", shellQuote(url));
  for (const link of optionList(options.findLinks)) flags.push("--find-links", shellQuote(link));
  if (options.pre) flags.push("--pre");
  return flags;
}

function sortedQuoted(packages: readonly string[]): string {
  return [...packages].sort().map(shellQuote).join(" ");
}

interface StepContext {
  index: number;
  escape: string;
  sources: ContextSource[];
  resolveLocalPath: (localPath: string) => string;
}

function addSource(
  context: StepContext,
  localPath: string,
  kind: ContextSource["kind"],
  ignore?: ContextSource["ignore"],
): string {
  const prefix = `${contextDir}/ctx/${context.index}`;
  const source: ContextSource = { prefix, localPath: context.resolveLocalPath(localPath), kind };
  if (ignore !== undefined) source.ignore = ignore;
  context.sources.push(source);
  return kind === "file" ? `${prefix}/file` : `${prefix}/`;
}

function copyLine(source: string, destination: string, escape: string): string {
  return `COPY ${jsonArray([quoteWord(source, escape), quoteWord(destination, escape)])}`;
}

function uvLines(step: { packages: readonly string[]; options: UvPipInstallOptions }): string[] {
  const install = [
    uvPath,
    "pip install",
    '--python "$(command -v python)"',
    "--compile-bytecode",
    ...pipFlags(step.options),
    sortedQuoted(step.packages),
  ];
  return [
    `COPY --from=${uvImage(step.options.uvVersion)} /uv ${uvPath}`,
    runShell(install.join(" ")),
  ];
}

function stepLines(step: ImageStep, context: StepContext): string[] {
  const { escape } = context;
  switch (step.kind) {
    case "aptInstall": {
      const packages = step.packages.map(shellQuote).join(" ");
      return [
        runShell(
          `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages} && rm -rf /var/lib/apt/lists/*`,
        ),
      ];
    }
    case "pipInstall": {
      const flags = ["--no-cache-dir", ...pipFlags(step.options)];
      return [runShell(`python -m pip install ${flags.join(" ")} ${sortedQuoted(step.packages)}`)];
    }
    case "uvPipInstall":
      return uvLines(step);
    case "pipInstallFromRequirements": {
      const remote = `/.modal-image/requirements-${context.index}.txt`;
      const source = addSource(context, step.localPath, "file");
      const flags = ["--no-cache-dir", ...pipFlags(step.options)];
      return [
        copyLine(source, remote, escape),
        runShell(`python -m pip install ${flags.join(" ")} -r ${shellQuote(remote)}`),
      ];
    }
    case "runCommands": {
      const mounts = (step.options.secrets ?? []).map(toSecretMount);
      return step.commands.map((command) => runWithSecrets(command, mounts, context.index));
    }
    case "dockerfileCommands":
      return step.commands.map((command) => command.replace(/\r\n/g, "\n").replace(/\n+$/, ""));
    case "env":
      if (Object.keys(step.vars).length === 0) return [];
      return [
        `ENV ${Object.entries(step.vars)
          .map(([key, value]) => `${key}=${value === "" ? '""' : quoteWord(value, escape)}`)
          .join(" ")}`,
      ];
    case "workdir":
      return [`WORKDIR ${quoteWord(step.path, escape)}`];
    case "entrypoint":
      return [`ENTRYPOINT ${jsonArray(step.args)}`];
    case "cmd":
      return [`CMD ${jsonArray(step.args)}`];
    case "addLocalFile": {
      const source = addSource(context, step.localPath, "file");
      const remote = step.remotePath.endsWith("/")
        ? step.remotePath + path.basename(step.localPath)
        : step.remotePath;
      return [copyLine(source, remote, escape)];
    }
    case "addLocalDir": {
      const source = addSource(context, step.localPath, "dir", step.options.ignore);
      return [copyLine(source, step.remotePath, escape)];
    }
  }
}

/** Returns the archive path of the file that contains the fingerprints of one step's secrets. */
export function secretFingerprintPath(stepIndex: number): string {
  return `${contextDir}/secrets/${stepIndex}`;
}

/**
 * Mount point of the fingerprint file in a RUN with secrets. /dev is a tmpfs in every build
 * container, so the mount point is never left in a layer.
 */
export const secretFingerprintTarget = "/dev/.modal-image-secrets";

/**
 * Writes a RUN whose secrets are mounted for this step only. The Dockerfile names each secret's
 * ID and file, never its value. The command's own shell reads a secret with an `env` name from
 * its file into that variable. `printf x` and `%x` keep the value's trailing newlines.
 *
 * BuildKit leaves secret values out of a step's cache key, so a step whose secret changed
 * would be taken from the cache. The step therefore also mounts a context file that contains its
 * secrets' fingerprints (see src/build/secrets.ts): its content is part of the cache key, and
 * the Dockerfile text stays the same whatever the values are.
 */
export function runWithSecrets(
  command: string,
  mounts: readonly SecretMount[],
  stepIndex: number,
): string {
  if (mounts.length === 0) return runShell(command);
  const flags = mounts.map(
    (mount) => `--mount=type=secret,id=${mount.id},target=${mount.target},required=true`,
  );
  flags.push(
    `--mount=type=bind,source=${secretFingerprintPath(stepIndex)},target=${secretFingerprintTarget}`,
  );
  const exports = mounts
    .filter((mount) => mount.env !== undefined)
    .map((mount) => {
      const name = mount.env!;
      return `${name}="$(cat ${shellQuote(mount.target)} && printf x)" || exit; ${name}="\${${name}%x}"; export ${name}`;
    });
  const script = exports.length === 0 ? command : `${exports.join("\n")}\n${command}`;
  return runShell(script).replace(/^RUN /, `RUN ${flags.join(" ")} `);
}

/**
 * Generates the Dockerfile for a validated image definition. The same definition always gives
 * the same text. A `# syntax=` directive appears only where the definition's own Dockerfile
 * text has one.
 */
export function generateDockerfile(input: GenerateInput): GeneratedDockerfile {
  const from = fromLine(input);
  const directives = readParserDirectives(from);
  const context: StepContext = {
    index: 0,
    escape: directives.get("escape") ?? defaultEscape,
    sources: [],
    resolveLocalPath: input.resolveLocalPath,
  };
  const lines = [from];
  input.image.steps.forEach((step, index) => {
    context.index = index;
    for (const line of stepLines(step, context)) {
      checkLineLength(line, `step ${index + 1} (${step.kind})`);
      lines.push(line);
    }
  });
  return { text: hoistSyntaxDirective(lines).join("\n") + "\n", sources: context.sources };
}

/** The Dockerfile parser of Docker Engine 20.10 rejects longer lines. */
export const maxDockerfileLineBytes = 65_535;

function checkLineLength(line: string, where: string): void {
  for (const physical of line.split("\n")) {
    const bytes = Buffer.byteLength(physical);
    if (bytes > maxDockerfileLineBytes) {
      throw new UsageError(
        `${where} makes a Dockerfile line of ${bytes} bytes, over the daemon's limit of ${maxDockerfileLineBytes}`,
        {
          hint: "split the command or value into smaller steps, or copy large text in with addLocalFile",
        },
      );
    }
  }
}

/** Moves a `# syntax=` line from raw Dockerfile commands to the top, where the parser reads it. */
function hoistSyntaxDirective(lines: string[]): string[] {
  if (readParserDirectives(lines[0] ?? "").has("syntax")) return lines;
  for (let index = 1; index < lines.length; index++) {
    const [first, ...rest] = (lines[index] ?? "").split("\n");
    const directive = /^\s*#\s*syntax\s*=\s*\S+/i.exec(first ?? "");
    if (directive) {
      const remaining = [
        ...lines.slice(0, index),
        ...(rest.length ? [rest.join("\n")] : []),
        ...lines.slice(index + 1),
      ];
      return [first!.trim(), ...remaining];
    }
  }
  return lines;
}
