import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { ExitCode, throwIfAborted, UsageError } from "./errors.js";
import { splitNameRef } from "./names.js";
import { packagePath } from "./package-root.js";
import { holdForCleanup, installProcessHandlers } from "./process-handlers.js";

interface GlobalOptions {
  json?: boolean;
  index?: string;
  registry?: string;
  config?: string;
  verbose?: boolean;
  debug?: boolean;
  quiet?: boolean;
  progress?: string;
}

const interruptSignal = installProcessHandlers();

function packageVersion(): string {
  const manifest = readFileSync(packagePath("package.json"), "utf8");
  return (JSON.parse(manifest) as { version: string }).version;
}

const expectHelp = "move the tag only if it has this digest now (none: only if it is unset)";

/** Prints a tag's value: its pinned reference, or the whole record with --json. */
function printRecord(record: { reference: string }, options: GlobalOptions): void {
  if (options.json) writeJson(record);
  else process.stdout.write(`${record.reference}\n`);
}

function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function addCommonOptions(command: Command): Command {
  return command
    .option("--json", "print one JSON document on stdout instead of text")
    .option(
      "-c, --config <path>",
      "config file to use instead of searching from the working directory",
    )
    .option("--debug", "print stack traces, and log each daemon and registry request on stderr")
    .option(
      "--index <local|registry>",
      "where names live; overrides MODAL_IMAGE_INDEX and the config (default: local)",
    )
    .option(
      "--registry <host[:port][/path]>",
      "registry to push to and, with --index registry, to keep names in; overrides MODAL_IMAGE_REGISTRY and the config",
    );
}

/** Runs a command action, printing its error once and setting the exit code. */
function action<Args extends unknown[]>(
  handler: (options: GlobalOptions, ...args: Args) => Promise<number | void>,
) {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const options = command.opts<GlobalOptions>();
    const positional = args.slice(0, -2) as Args;
    if (options.debug) (await import("./debug-log.js")).enableDebugLog();
    try {
      checkWorkingDirectory();
      const code = await handler(options, ...positional);
      // A command that finished its work after a signal still reports the interruption.
      throwIfAborted(interruptSignal, "command");
      process.exitCode = code ?? ExitCode.ok;
    } catch (error) {
      // Loaded only on failure, because it brings in chalk.
      const { reportError } = await import("./output/report-error.js");
      process.exitCode = reportError(error, {
        json: options.json ?? false,
        debug: options.debug ?? false,
        stderrFormat,
      });
    }
  };
}

/** Throws a UsageError when the working directory was deleted, which process.cwd() reports as ENOENT. */
function checkWorkingDirectory(): void {
  try {
    process.cwd();
  } catch (error) {
    throw new UsageError("the working directory no longer exists", {
      hint: "cd to an existing directory and run the command again",
      cause: error,
    });
  }
}

function commandOptions(options: GlobalOptions) {
  return {
    ...(options.config === undefined ? {} : { configPath: options.config }),
    ...(options.index === undefined ? {} : { index: options.index }),
    ...(options.registry === undefined ? {} : { registry: options.registry }),
    signal: interruptSignal,
  };
}

/** The format of errors on stderr: text, or JSON lines once `--progress json` is chosen. */
let stderrFormat: "text" | "json" = "text";

async function progress(options: GlobalOptions) {
  const { chooseProgressMode, createProgressRenderer } = await import("./output/progress.js");
  const mode = chooseProgressMode(options);
  if (mode === "json") stderrFormat = "json";
  return createProgressRenderer(mode);
}

const progressHelp =
  "how progress is shown on stderr: auto (a spinner on a terminal, step lines otherwise), plain (steps with the build log) or json (one event per line); default: MODAL_IMAGE_PROGRESS, else auto";

const program = new Command("modal-image")
  .description(
    "Define container images in TypeScript, build them with Docker and publish them under names.",
  )
  .version(packageVersion(), "-V, --version")
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({
    writeOut: (text) => process.stdout.write(text),
    writeErr: (text) => process.stderr.write(text),
  })
  .addHelpText(
    "after",
    "\nExit codes: 0 success, 1 failed operation, 2 invalid input, 3 not found, 4 --expect conflict,\n130 interrupted;\n`run` exits with the container's code.",
  );

addCommonOptions(
  program
    .command("build")
    .description("build image definitions; push them when a registry is set; publish names")
    .argument("[image...]", "definition keys to build (default: all, or those --publish names)")
    .option(
      "--publish <name[:tag]>",
      "point NAME[:TAG] at the image after build and push succeed (repeatable)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--expect <digest>", expectHelp)
    .option("--no-cache", "build without the daemon's layer cache; implies --force")
    .option(
      "--force",
      "build even when an image of the same definition exists locally or in the registry",
    )
    .option("--parallel <n>", "maximum number of images built at once (default: 2)")
    .option("--progress <auto|plain|json>", progressHelp)
    .option("--verbose", "the same as --progress plain")
    .option("-q, --quiet", "print no progress; stdout still gets the pinned references")
    .option(
      "--metadata-file <path>",
      "after a successful build, write the images' IDs, digests, references and names to this JSON file",
    ),
).action(
  action(
    async (
      options: GlobalOptions & {
        publish?: string[];
        cache?: boolean;
        expect?: string;
        force?: boolean;
        parallel?: string;
        metadataFile?: string;
      },
      images: string[],
    ) => {
      // Keeping V8's young generation at its initial size cut the peak RSS of a 1 GiB build from
      // 155 to 111 MiB for 25% more CPU time. V8 reads this flag at each growth, so it applies now.
      const { setFlagsFromString } = await import("node:v8");
      setFlagsFromString("--semi-space-growth-factor=1");
      const { build } = await import("./commands/build.js");
      const renderer = await progress(options);
      const { checkMetadataPath, writeMetadataFile } = await import("./output/metadata-file.js");
      const metadataPath =
        options.metadataFile === undefined
          ? undefined
          : await checkMetadataPath(options.metadataFile);
      try {
        const result = await build({
          ...commandOptions(options),
          images,
          publish: options.publish ?? [],
          ...(options.expect === undefined ? {} : { expect: options.expect }),
          noCache: options.cache === false,
          force: options.force ?? false,
          ...(options.parallel === undefined ? {} : { parallel: options.parallel }),
          onProgress: (event) => renderer.onEvent(event),
        });
        // Written before stdout, so that a failure to write it leaves one document on stdout.
        if (metadataPath !== undefined) await writeMetadataFile(metadataPath, result);
        if (options.json) writeJson(result);
        else for (const image of result.images) process.stdout.write(`${image.reference}\n`);
      } finally {
        renderer.stop();
      }
    },
  ),
);

addCommonOptions(
  program
    .command("publish")
    .description("point NAME[:TAG] at an existing image without rebuilding")
    .argument(
      "<source>",
      "a name in the index, a pinned reference (REPO@sha256:...) or an image ID",
    )
    .argument("<name[:tag]>", "the name to move; the tag defaults to latest")
    .option("--expect <digest>", expectHelp),
).action(
  action(async (options: GlobalOptions & { expect?: string }, source: string, target: string) => {
    const { publish } = await import("./commands/publish.js");
    const record = await publish(source, target, {
      ...commandOptions(options),
      ...(options.expect === undefined ? {} : { expect: options.expect }),
    });
    printRecord(record, options);
  }),
);

addCommonOptions(
  program
    .command("resolve")
    .description("print the pinned reference a name points at")
    .argument("<name[:tag]>", "the name to look up; the tag defaults to latest"),
).action(
  action(async (options, nameRef: string) => {
    const { resolve } = await import("./commands/resolve.js");
    const record = await resolve(nameRef, commandOptions(options));
    printRecord(record, options);
  }),
);

addCommonOptions(
  program
    .command("tags")
    .description("list the tags of a name, newest first")
    .argument("<name>", "the name whose tags to list")
    .option("-q, --quiet", "print only the tags, one per line"),
).action(
  action(async (options, name: string) => {
    const { tags } = await import("./commands/resolve.js");
    const records = await tags(name, commandOptions(options));
    if (options.json) return writeJson({ name, tags: records });
    const { writeTagTable } = await import("./output/table.js");
    writeTagTable(records, options.quiet ?? false);
  }),
);

addCommonOptions(
  program
    .command("history")
    .description("list every value a tag has had, newest first")
    .argument("<name[:tag]>", "the tag whose history to list; the tag defaults to latest"),
).action(
  action(async (options, nameRef: string) => {
    const { history } = await import("./commands/resolve.js");
    const records = await history(nameRef, commandOptions(options));
    if (options.json) return writeJson({ ...splitNameRef(nameRef), history: records });
    const { writeTable } = await import("./output/table.js");
    const rows = records.map((record) => [
      record.publishedAt,
      record.action,
      record.digest || "-",
      `${record.user}@${record.host}`,
      record.reference || "-",
    ]);
    writeTable(["PUBLISHED", "ACTION", "DIGEST", "BY", "REFERENCE"], rows);
  }),
);

addCommonOptions(
  program
    .command("rollback")
    .description("point a tag back at an earlier value from its history, without building")
    .argument("<name[:tag]>", "the tag to move back; the tag defaults to latest")
    .option("--to <digest>", "the earlier digest to go back to (default: the value before)")
    .option("--expect <digest>", expectHelp),
).action(
  action(async (options: GlobalOptions & { to?: string; expect?: string }, nameRef: string) => {
    const { rollback } = await import("./commands/rollback.js");
    const record = await rollback(nameRef, {
      ...commandOptions(options),
      ...(options.to === undefined ? {} : { to: options.to }),
      ...(options.expect === undefined ? {} : { expect: options.expect }),
    });
    printRecord(record, options);
  }),
);

addCommonOptions(
  program
    .command("untag")
    .description("remove a tag; its history stays and rollback restores it")
    .argument("<name[:tag]>", "the tag to remove; the tag defaults to latest")
    .option("--expect <digest>", "remove the tag only if it has this digest now"),
).action(
  action(async (options: GlobalOptions & { expect?: string }, nameRef: string) => {
    const { untag } = await import("./commands/rollback.js");
    const record = await untag(nameRef, {
      ...commandOptions(options),
      ...(options.expect === undefined ? {} : { expect: options.expect }),
    });
    printRecord(record, options);
  }),
);

addCommonOptions(
  program
    .command("names")
    .description("list the names in the index with their tags")
    .option("--prefix <prefix>", "only names that start with this text")
    .option("-q, --quiet", "print only the names, one per line"),
).action(
  action(async (options: GlobalOptions & { prefix?: string }) => {
    const { names } = await import("./commands/resolve.js");
    const listings = await names(options.prefix ?? "", commandOptions(options));
    if (options.json) return writeJson({ names: listings });
    if (options.quiet) {
      for (const listing of listings) process.stdout.write(`${listing.name}\n`);
      return;
    }
    const { writeTable } = await import("./output/table.js");
    const rows = listings.map((listing) => [
      listing.name,
      listing.tags.map((tag) => tag.tag).join(","),
    ]);
    writeTable(["NAME", "TAGS"], rows);
  }),
);

addCommonOptions(
  program
    .command("dockerfile")
    .description("print the Dockerfile generated for a definition, without contacting the daemon")
    .argument("<image>", "the definition key in the config"),
).action(
  action(async (options, image: string) => {
    const { dockerfile } = await import("./commands/dockerfile.js");
    const text = await dockerfile(image, commandOptions(options));
    if (options.json) writeJson({ image, dockerfile: text });
    else process.stdout.write(text);
  }),
);

addCommonOptions(
  program
    .command("run")
    .description("start a container from the image a name points at, stream its output, remove it")
    .argument("<name[:tag]>", "the name to run; the tag defaults to latest")
    .argument("[command...]", "command and arguments, after --; default: the image's CMD")
    .option("-i, --interactive", "forward stdin to the container until it ends, like docker run -i")
    .option("--progress <auto|plain|json>", progressHelp)
    .option("-q, --quiet", "print no progress"),
).action(
  action(
    async (
      options: GlobalOptions & { interactive?: boolean },
      nameRef: string,
      command: string[],
    ) => {
      const { run } = await import("./commands/run.js");
      const renderer = await progress(options);
      const release = holdForCleanup();
      try {
        const result = await run(nameRef, command, {
          ...commandOptions(options),
          ...(options.interactive ? { stdin: process.stdin } : {}),
          // With --json, stdout carries only the result document, so the container's stdout goes to stderr.
          stdout: options.json ? process.stderr : process.stdout,
          stderr: process.stderr,
          onProgress: (event) => renderer.onEvent(event),
        });
        if (options.json) writeJson(result);
        return result.exitCode;
      } finally {
        release();
        renderer.stop();
        // Input the container did not read would otherwise keep this process waiting for its end.
        if (options.interactive) process.stdin.destroy();
      }
    },
  ),
);

addCommonOptions(
  program
    .command("doctor")
    .description(
      "check the config, Docker daemon, base images, registry, credentials and name index, and say what to fix",
    )
    .option("-q, --quiet", "print only the checks that warn or fail"),
).action(
  action(async (options) => {
    const { doctor } = await import("./commands/doctor.js");
    const checks = await doctor(commandOptions(options));
    if (options.json) writeJson(checks);
    else {
      const { writeDoctorReport } = await import("./output/doctor-report.js");
      writeDoctorReport(checks, options.quiet ?? false);
    }
    return checks.some((check) => check.status === "fail") ? ExitCode.failed : ExitCode.ok;
  }),
);

program
  .command("init")
  .description("write a starter image.config.ts in the working directory")
  .option("--force", "replace an existing image.config.ts")
  .option("--json", "print one JSON document on stdout instead of text")
  .option("--debug", "print stack traces, and log each daemon and registry request on stderr")
  .action(
    action(async (options: GlobalOptions & { force?: boolean }) => {
      const { init } = await import("./commands/init.js");
      const file = await init({ force: options.force ?? false });
      if (options.json) writeJson({ config: file });
      else process.stdout.write(`${file}\n`);
    }),
  );

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    const done = ["commander.helpDisplayed", "commander.version", "commander.help"].includes(
      error.code,
    );
    process.exitCode = done ? ExitCode.ok : ExitCode.usage;
    // commander has printed the message on stderr; --json still owes stdout its one document.
    if (!done && process.argv.includes("--json")) {
      const message = error.message.replace(/^error: /, "");
      process.stdout.write(`${JSON.stringify({ error: { message, exitCode: ExitCode.usage } })}\n`);
    }
  } else {
    const { reportError } = await import("./output/report-error.js");
    process.exitCode = reportError(error, { json: false, debug: process.argv.includes("--debug") });
  }
}
