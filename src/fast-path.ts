/**
 * The plain forms of `resolve` and `tags` on the local index, run without commander or the
 * other commands so that scripts calling them in a loop pay little more than Node's start-up.
 * `npm run bundle` bundles this file alone into the CommonJS file `dist/bundle/fast-path.cjs`,
 * which `bin/modal-image` loads first, because Node starts a CommonJS entry sooner than an ES
 * module one.
 *
 * It accepts only arguments whose meaning is certain without commander: the command, one
 * operand that does not start with `-`, the flags `--json`, `--debug` and (for tags)
 * `-q`/`--quiet`, and the options `-c`/`--config`, `--index` and `--registry` as
 * `--option VALUE` or `--option=VALUE`. It also needs the index to be local and the config's
 * settings to be in the cache. Otherwise (help, version, unknown options, a missing or extra
 * operand, the registry index, a config to load) it returns false before printing anything,
 * and the full CLI runs the command. Output, errors and exit codes are those of `src/cli.ts`,
 * because both call the same index methods and error report.
 *
 * NOTE: with --debug, stack traces name the bundle's files instead of `src/*.ts`.
 */
import {
  checkRegistryOption,
  indexKindOption,
  needsConfigSettings,
} from "./commands/index-choice.js";
import type { CommandOptions } from "./commands/options.js";
import { lookUpIndexSettings } from "./config/settings.js";
import { ExitCode } from "./errors.js";
import { modalImageHome } from "./home.js";
import { LocalIndex } from "./index-store/local.js";
import { assertTagsOperand, parseNameRef } from "./names.js";
import { installProcessHandlers } from "./process-handlers.js";
import { writeTagTable } from "./output/table.js";

/** A `resolve` or `tags` command line that the fast path handles. */
export interface FastCommand {
  command: "resolve" | "tags";
  /** `NAME[:TAG]` for resolve, `NAME` for tags. The command function validates it. */
  operand: string;
  json: boolean;
  debug: boolean;
  /** Whether `tags -q` was given, which prints only the tags. */
  quiet: boolean;
  /** The options with a value, as `src/cli.ts` passes them to the command functions. */
  options: Pick<CommandOptions, "configPath" | "index" | "registry">;
}

/** Options that take a value, by spelling, with the CommandOptions field each one sets. */
const valueOptions = new Map<string, "configPath" | "index" | "registry">([
  ["-c", "configPath"],
  ["--config", "configPath"],
  ["--index", "index"],
  ["--registry", "registry"],
]);

/** Parses the arguments after the program name, or returns undefined to leave them to the CLI. */
export function parseFastCommand(args: readonly string[]): FastCommand | undefined {
  const [command, ...rest] = args;
  if (command !== "resolve" && command !== "tags") return undefined;

  let operand: string | undefined;
  let json = false;
  let debug = false;
  let quiet = false;
  const options: FastCommand["options"] = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const equals = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const spelling = equals > 0 ? arg.slice(0, equals) : arg;
    const field = valueOptions.get(spelling);
    if (arg === "--json") {
      json = true;
    } else if (arg === "--debug") {
      debug = true;
    } else if ((arg === "-q" || arg === "--quiet") && command === "tags") {
      quiet = true;
    } else if (field && equals > 0) {
      options[field] = arg.slice(equals + 1);
    } else if (field) {
      // Whether a value that starts with `-` is a value or an option is commander's call.
      const value = rest[i + 1];
      if (value === undefined || value.startsWith("-")) return undefined;
      options[field] = value;
      i += 1;
    } else if (arg.startsWith("-") || operand !== undefined) {
      return undefined;
    } else {
      operand = arg;
    }
  }
  if (operand === undefined) return undefined;
  return { command, operand, json, debug, quiet, options };
}

function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Opens the local index when the command line and the cached config settings choose it.
 * Returns undefined when the full CLI must decide, which then reports any error.
 */
async function openLocalIndex(options: CommandOptions): Promise<LocalIndex | undefined> {
  try {
    const home = modalImageHome(process.env);
    checkRegistryOption(options);
    let kind = indexKindOption(options);
    if (needsConfigSettings(options, kind)) {
      const lookup = await lookUpIndexSettings({
        cwd: process.cwd(),
        configPath: options.configPath,
        home,
      });
      if (!lookup.settings) return undefined;
      kind ??= lookup.settings.index;
    }
    return (kind ?? "local") === "local" ? new LocalIndex(home) : undefined;
  } catch {
    return undefined;
  }
}

async function runCommand(parsed: FastCommand, index: LocalIndex): Promise<void> {
  if (parsed.command === "resolve") {
    const record = await index.resolve(parseNameRef(parsed.operand));
    if (parsed.json) writeJson(record);
    else process.stdout.write(`${record.reference}\n`);
    return;
  }

  assertTagsOperand(parsed.operand);
  const records = await index.tags(parsed.operand);
  if (parsed.json) {
    writeJson({ name: parsed.operand, tags: records });
    return;
  }
  writeTagTable(records, parsed.quiet);
}

/**
 * Runs `args` (the arguments after the program name) if the fast path handles them, setting
 * `process.exitCode`. Returns false, having printed nothing, when the full CLI must run instead.
 */
export async function runFastPath(args: readonly string[]): Promise<boolean> {
  const parsed = parseFastCommand(args);
  if (!parsed) return false;
  const index = await openLocalIndex(parsed.options);
  if (!index) return false;

  installProcessHandlers();
  if (parsed.debug) (await import("./debug-log.js")).enableDebugLog();
  try {
    await runCommand(parsed, index);
    process.exitCode = ExitCode.ok;
  } catch (error) {
    // Loaded only here, because it brings in chalk.
    const { reportError } = await import("./output/report-error.js");
    process.exitCode = reportError(error, { json: parsed.json, debug: parsed.debug });
  }
  return true;
}
