/**
 * Start-up and name-index benchmarks. `npm run bench` builds the package, runs this file with
 * jiti, prints the results and rewrites BENCHMARKS.md. It needs the Docker daemon and the image
 * busybox:latest (`bash scripts/stack.sh up`). Apart from BENCHMARKS.md it writes only under a
 * temporary directory that it removes, and it talks only to the local daemon's socket.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import prettier from "prettier";
import type { LogEntry } from "../src/index-store/log.js";
import type { TagRecord } from "../src/index-store/types.js";

type LocalIndexModule = typeof import("../src/index-store/local.js");
type LogModule = typeof import("../src/index-store/log.js");

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const binPath = path.join(repoRoot, "bin", "modal-image");
const pagePath = path.join(repoRoot, "BENCHMARKS.md");

/** Spawned runs per command in the start-up table, after the warm-up rounds. */
const startupRuns = 21;
/** Spawned runs per command in the index table. */
const indexRuns = 15;
/** Uncounted rounds before each table, so that every file is in the page cache. */
const warmupRounds = 2;
/** In-process calls per library operation in the index table. */
const libraryCalls = 200;

const tagsPerName = 100;
const largeNameCount = 1000;
/** The name every index row reads or writes, in both index sizes. */
const benchName = appName(500);

interface Timed {
  label: string;
  file: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

/** Milliseconds of repeated runs of one operation. */
interface Sample {
  median: number;
  min: number;
  max: number;
  runs: number;
}

function summarize(times: number[]): Sample {
  const sorted = [...times].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)!, runs: sorted.length };
}

/** Spawns a command once with piped output and returns its wall-clock time in milliseconds. */
function timeSpawn(command: Timed, cwd: string): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(command.file, command.args, {
    env: command.env ?? process.env,
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
  });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(
      `${command.label} exited with ${result.status ?? result.signal}: ${result.stderr.trim()}`,
    );
  }
  return elapsed;
}

/**
 * Times each command `runs` times from `cwd`. The commands take turns, one run of each per
 * round, so that load from other processes on the machine falls on all of them alike.
 */
function timeSpawns(commands: readonly Timed[], runs: number, cwd: string): Map<string, Sample> {
  const times = new Map<string, number[]>(commands.map((command) => [command.label, []]));
  for (let round = 0; round < warmupRounds + runs; round++) {
    for (const command of commands) {
      const elapsed = timeSpawn(command, cwd);
      if (round >= warmupRounds) times.get(command.label)!.push(elapsed);
    }
  }
  return new Map([...times].map(([label, values]) => [label, summarize(values)]));
}

async function timeCalls(calls: number, operation: () => Promise<unknown>): Promise<Sample> {
  for (let i = 0; i < warmupRounds; i++) await operation();
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const start = process.hrtime.bigint();
    await operation();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return summarize(times);
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

function loadDist<Module>(relative: string): Promise<Module> {
  return import(new URL(`../dist/${relative}`, import.meta.url).href) as Promise<Module>;
}

// ---------------------------------------------------------------------------------------------
// Seeding the name index

function tagName(index: number): string {
  return `t${String(index).padStart(3, "0")}`;
}

function appName(index: number): string {
  return `bench/app-${String(index).padStart(4, "0")}`;
}

function digestOf(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

/**
 * Builds the entry LocalIndex.publish writes, with the same fields in the same order, so that
 * the seeded files match published ones byte for byte apart from id and time.
 */
function publishEntry(name: string, tag: string, at: Date): LogEntry {
  const digest = digestOf(`${name}:${tag}`);
  return {
    id: randomBytes(12).toString("hex"),
    action: "publish",
    reference: `127.0.0.1:5000/${name}@${digest}`,
    digest,
    at: at.toISOString(),
    host: os.hostname(),
    user: os.userInfo().username,
  };
}

/**
 * Writes `tagsPerName` tag logs for each name, in the layout LocalIndex reads
 * (`<home>/index/<name>/_tags/<tag>.log`), each holding one line from the library's own
 * `formatEntry`. It skips the fsync that LocalIndex.publish does after each write, which would
 * make seeding 100,000 tags take minutes.
 */
async function seedIndex(home: string, names: readonly string[], logModule: LogModule) {
  const start = new Date("2026-01-01T00:00:00Z").getTime();
  for (const name of names) {
    const dir = path.join(home, "index", name, "_tags");
    mkdirSync(dir, { recursive: true });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < tagsPerName; i++) {
      const entry = publishEntry(name, tagName(i), new Date(start + i * 60_000));
      writes.push(fs.writeFile(path.join(dir, `${tagName(i)}.log`), logModule.formatEntry(entry)));
    }
    await Promise.all(writes);
  }
}

/** Throws unless a seeded log has the same shape as one that LocalIndex.publish wrote. */
async function checkSeedFormat(scratch: string, modules: [LocalIndexModule, LogModule]) {
  const [{ LocalIndex }, logModule] = modules;
  const name = "format/check";
  const published = new LocalIndex(path.join(scratch, "published"));
  const seeded = publishEntry(name, "latest", new Date());
  await published.publish(
    { name, tag: "latest" },
    { action: "publish", reference: seeded.reference!, digest: seeded.digest! },
  );
  const file = path.join(scratch, "published", "index", name, "_tags", "latest.log");
  const publishedText = await fs.readFile(file, "utf8");
  const [publishedEntry] = logModule.parseLog(publishedText);
  const normalize = (entry: LogEntry) => JSON.stringify({ ...entry, id: "", at: "" });
  if (
    !publishedEntry ||
    publishedText !== logModule.formatEntry(publishedEntry) ||
    normalize(publishedEntry) !== normalize(seeded)
  ) {
    throw new Error(`seeded entries differ from LocalIndex.publish output: ${publishedText}`);
  }
}

/** Throws unless LocalIndex reads the seeded values back. */
async function checkSeededIndex(home: string, names: readonly string[], local: LocalIndexModule) {
  const index = new local.LocalIndex(home);
  for (const name of [names[0]!, benchName, names.at(-1)!]) {
    const records: TagRecord[] = await index.tags(name);
    const newest = records[0];
    if (records.length !== tagsPerName || newest?.tag !== tagName(tagsPerName - 1)) {
      throw new Error(
        `seeded index at ${home}: ${name} reads back ${records.length} tags, newest ${newest?.tag}`,
      );
    }
    if (newest.digest !== digestOf(`${name}:${newest.tag}`)) {
      throw new Error(`seeded index at ${home}: ${name}:${newest.tag} has the wrong digest`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/**
 * Returns the environment for CLI runs: the local index in `home`, no colour, and no index or
 * registry settings from the caller's environment. The runs start in `home` too, which is
 * outside the repository, so the CLI reads no config.
 */
function cliEnvironment(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, MODAL_IMAGE_HOME: home, NO_COLOR: "1" };
  delete env.MODAL_IMAGE_INDEX;
  delete env.MODAL_IMAGE_REGISTRY;
  return env;
}

interface StartupResult {
  samples: Map<string, Sample>;
  baseline: string;
  docker: string;
}

async function measureStartup(scratch: string, logModule: LogModule): Promise<StartupResult> {
  const home = path.join(scratch, "startup");
  await seedIndex(home, [benchName], logModule);

  const env = cliEnvironment(home);
  const baseline = 'node -e ""';
  const docker = "docker image inspect busybox:latest";
  const ref = `${benchName}:${tagName(0)}`;
  const cli = (args: string[], note = "", cliEnv = env): Timed => ({
    label: `modal-image ${args.join(" ")}${note}`,
    file: binPath,
    args,
    env: cliEnv,
  });

  const commands: Timed[] = [
    { label: baseline, file: "node", args: ["-e", ""] },
    cli(["resolve", ref]),
    cli(["tags", benchName]),
    cli(["history", ref], " (full CLI)"),
    {
      label: `node dist/cli.js resolve ${ref} (full CLI, no fast path)`,
      file: "node",
      args: [path.join(repoRoot, "dist", "cli.js"), "resolve", ref],
      env,
    },
    { label: docker, file: "docker", args: ["image", "inspect", "busybox:latest"] },
  ];
  if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
    const { NODE_EXTRA_CA_CERTS: _unset, ...bare } = env;
    commands.push(
      {
        label: `${baseline}, NODE_EXTRA_CA_CERTS unset`,
        file: "node",
        args: ["-e", ""],
        env: bare,
      },
      cli(["resolve", ref], ", NODE_EXTRA_CA_CERTS unset", bare),
    );
  }

  log(`start-up: ${commands.length} commands, ${startupRuns} runs each`);
  return { samples: timeSpawns(commands, startupRuns, home), baseline, docker };
}

interface IndexSize {
  label: string;
  names: string[];
}

/** The index rows at one size, by operation. */
type IndexResult = Map<string, Sample>;

async function measureIndex(
  home: string,
  size: IndexSize,
  modules: [LocalIndexModule, LogModule],
): Promise<IndexResult> {
  const [local, logModule] = modules;
  const started = Date.now();
  await seedIndex(home, size.names, logModule);
  log(`${size.label}: seeded in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await checkSeededIndex(home, size.names, local);

  const env = cliEnvironment(home);
  const source = `${benchName}:${tagName(0)}`;
  const cliRows: Timed[] = [
    {
      label: "publish, CLI",
      file: binPath,
      args: ["publish", source, `${benchName}:${tagName(tagsPerName - 1)}`],
      env,
    },
    { label: "resolve, CLI", file: binPath, args: ["resolve", source], env },
    { label: "tags, CLI", file: binPath, args: ["tags", benchName], env },
  ];
  const result = timeSpawns(cliRows, indexRuns, home);

  const index = new local.LocalIndex(home);
  const sourceRef = { name: benchName, tag: tagName(0) };
  // The library rows move another tag than the CLI rows, so that each row appends to its own log.
  const target = { name: benchName, tag: tagName(tagsPerName - 2) };
  const value = await index.resolve(sourceRef);
  result.set(
    "publish, LocalIndex.publish",
    await timeCalls(libraryCalls, () =>
      index.publish(target, {
        action: "publish",
        reference: value.reference,
        digest: value.digest,
      }),
    ),
  );
  result.set(
    "resolve, LocalIndex.resolve",
    await timeCalls(libraryCalls, () => index.resolve(sourceRef)),
  );
  result.set("tags, LocalIndex.tags", await timeCalls(libraryCalls, () => index.tags(benchName)));
  return result;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: string;
  os: string;
  node: string;
  docker: string;
  date: string;
  loadAverage: string;
}

function describeMachine(): Machine {
  const docker = spawnSync("docker", ["version", "--format", "{{.Server.Version}}"], {
    encoding: "utf8",
  });
  if (docker.status !== 0) {
    throw new Error(
      `docker version failed: ${docker.stderr.trim()}; start the daemon with: bash scripts/stack.sh up`,
    );
  }
  const busybox = spawnSync("docker", ["image", "inspect", "busybox:latest"], { encoding: "utf8" });
  if (busybox.status !== 0) {
    throw new Error(
      `busybox:latest is missing: ${busybox.stderr.trim()}; create it with: bash scripts/stack.sh up`,
    );
  }
  return {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memoryGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    docker: docker.stdout.trim(),
    date: new Date().toISOString().slice(0, 10),
    loadAverage: os.loadavg()[0]!.toFixed(2),
  };
}

function ms(value: number): string {
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

function ratio(value: number, base: number): string {
  return `${(value / base).toFixed(2)}×`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function startupTable(result: StartupResult): string {
  const base = result.samples.get(result.baseline)!.median;
  const docker = result.samples.get(result.docker)!.median;
  const rows = [...result.samples].map(([label, sample]) => [
    `\`${label}\``,
    ms(sample.median),
    `${ms(sample.min)}–${ms(sample.max)}`,
    ratio(sample.median, base),
    ratio(sample.median, docker),
  ]);
  return table(
    ["command", "median ms", "range ms", `÷ \`${result.baseline}\``, `÷ \`${result.docker}\``],
    rows,
  );
}

function indexTable(small: IndexResult, large: IndexResult, sizes: [IndexSize, IndexSize]) {
  const rows = [...small].map(([label, sample]) => {
    const other = large.get(label)!;
    return [
      label,
      ms(sample.median),
      ms(other.median),
      ratio(other.median, sample.median),
      String(sample.runs),
    ];
  });
  return table(
    [
      "operation",
      `${sizes[0].label}, median ms`,
      `${sizes[1].label}, median ms`,
      "large ÷ small",
      "runs",
    ],
    rows,
  );
}

interface Report {
  machine: Machine;
  startup: StartupResult;
  small: IndexResult;
  large: IndexResult;
  sizes: [IndexSize, IndexSize];
}

function caCertsNote(): string[] {
  if (process.env.NODE_EXTRA_CA_CERTS === undefined) return [];
  return [
    "",
    "NODE_EXTRA_CA_CERTS was set on this machine. Node 20 reads that file at every start, so " +
      "it adds the same time to the baseline and to every modal-image command; the rows marked " +
      "“unset” run without it and show the start-up cost on a machine without the setting.",
  ];
}

function renderPage(report: Report): string {
  const { machine } = report;
  return [
    "# Benchmarks",
    "",
    `Written by \`npm run bench\` (scripts/bench.ts) on ${machine.date}. Rerun it to refresh ` +
      "this page. Numbers from another machine are not comparable.",
    "",
    "## Machine",
    "",
    `- CPU: ${machine.cpu}, ${machine.cores} cores`,
    `- Memory: ${machine.memoryGiB} GiB`,
    `- OS: ${machine.os}`,
    `- Node ${machine.node}, Docker ${machine.docker}`,
    `- Load average (1 min) when the run started: ${machine.loadAverage}. Other processes on ` +
      "the machine add noise, so compare medians and ratios rather than single runs.",
    "",
    "## Method",
    "",
    "Each command is started with `child_process.spawnSync`, stdout and stderr piped, and timed " +
      "with `process.hrtime` from spawn to exit, so a row includes process start. The commands " +
      "of a table take turns, one run of each per round, so that load from other processes " +
      `falls on all of them alike. ${warmupRounds} warm-up rounds are not counted.`,
    "",
    "## Start-up",
    "",
    `Median of ${startupRuns} runs. The index holds one name with ${tagsPerName} tags. ` +
      "`resolve` and `tags` run through the fast path of `bin/modal-image`, which loads one " +
      "bundled file instead of commander and the command modules; `history` and " +
      "`node dist/cli.js` show the full CLI.",
    "",
    startupTable(report.startup),
    ...caCertsNote(),
    "",
    "## Name index at scale",
    "",
    `The small index holds one name with ${tagsPerName} tags; the large one ` +
      `${largeNameCount.toLocaleString("en-US")} names (\`${appName(0)}\` to ` +
      `\`${appName(largeNameCount - 1)}\`) with ${tagsPerName} tags each. Every row reads or ` +
      `writes \`${benchName}\`. The bench seeds each tag log with one line from the library's ` +
      "`formatEntry`, with the fields and field order of `LocalIndex.publish`, but without its " +
      "fsync; before seeding it checks that line against a log that `LocalIndex.publish` wrote, " +
      "and after seeding it reads names back through `LocalIndex.tags`.",
    "",
    `CLI rows are medians of ${indexRuns} spawned runs and include Node start-up. The ` +
      `publish row runs \`modal-image publish ${benchName}:t000 ${benchName}:t099\`, which ` +
      "copies a value inside the index and contacts no daemon. Library rows are medians of " +
      `${libraryCalls} calls in one process, on the built \`dist/\` code, and each ` +
      "`LocalIndex.publish` call includes one fsync (`datasync`) of the tag log.",
    "",
    indexTable(report.small, report.large, report.sizes),
    "",
    "## Not measured yet",
    "",
    "These rows of the full benchmark need the daemon and registry and have no numbers yet:",
    "",
    "- `build` of a definition with an empty layer cache",
    "- `build` with push to the local registry (127.0.0.1:5000)",
    "- no-op rebuild: `build` again with the definition and context unchanged",
    "- peak memory (maximum RSS) of `build`, `resolve` and `tags`",
    "",
  ].join("\n");
}

async function writePage(text: string): Promise<void> {
  const config = await prettier.resolveConfig(pagePath);
  const formatted = await prettier.format(text, { ...config, filepath: pagePath });
  await fs.writeFile(pagePath, formatted);
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const machine = describeMachine();
  const modules: [LocalIndexModule, LogModule] = [
    await loadDist<LocalIndexModule>("index-store/local.js"),
    await loadDist<LogModule>("index-store/log.js"),
  ];
  const scratch = mkdtempSync(path.join(os.tmpdir(), "modal-image-bench-"));
  const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
  const onSignal = () => {
    removeScratch();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await checkSeedFormat(scratch, modules);
    const startup = await measureStartup(scratch, modules[1]);
    const largeNames = Array.from({ length: largeNameCount }, (_, i) => appName(i));
    const sizes: [IndexSize, IndexSize] = [
      { label: `${tagsPerName} tags`, names: [benchName] },
      {
        label: `${(largeNameCount * tagsPerName).toLocaleString("en-US")} tags`,
        names: largeNames,
      },
    ];
    const small = await measureIndex(path.join(scratch, "small"), sizes[0], modules);
    const large = await measureIndex(path.join(scratch, "large"), sizes[1], modules);
    const page = renderPage({ machine, startup, small, large, sizes });
    await writePage(page);
    process.stdout.write(page);
    log(`wrote ${path.relative(process.cwd(), pagePath)}`);
  } finally {
    removeScratch();
  }
}

await main();
