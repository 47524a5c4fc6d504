/**
 * Start-up, name-index and build benchmarks. `npm run bench` builds the package, runs this file
 * with jiti, prints the results and rewrites BENCHMARKS.md. It needs the Docker daemon, the
 * image busybox:latest and the open registry on 127.0.0.1:5000 (`bash scripts/stack.sh up`),
 * about 3 GiB free on the daemon's disk, and `/usr/bin/time`. Apart from BENCHMARKS.md it writes
 * only under a temporary directory that it removes, and it talks only to the local daemon's
 * socket and that registry. It removes the images and registry manifests it creates, all under
 * `modal-image-bench/`; the registry keeps their blobs.
 */
import { spawnSync } from "node:child_process";
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/**
 * Spawns a command once with piped output and returns its wall-clock time in milliseconds and
 * its stdout.
 */
function spawnTimed(command: Timed, cwd: string): { elapsed: number; stdout: string } {
  const start = process.hrtime.bigint();
  const result = spawnSync(command.file, command.args, {
    env: command.env ?? process.env,
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
  });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(
      `${command.label} exited with ${result.status ?? result.signal}: ${result.stderr.trim()}`,
    );
  }
  return { elapsed, stdout: result.stdout };
}

function timeSpawn(command: Timed, cwd: string): number {
  return spawnTimed(command, cwd).elapsed;
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

/** Imports a module of the library from its TypeScript source, which jiti compiles. */
function loadSource<Module>(relative: string): Promise<Module> {
  const source = relative.replace(/\.js$/, ".ts");
  return import(new URL(`../src/${source}`, import.meta.url).href) as Promise<Module>;
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
      label: `node dist/bundle/cli.js resolve ${ref} (full CLI, no fast path)`,
      file: "node",
      args: [path.join(repoRoot, "dist", "bundle", "cli.js"), "resolve", ref],
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
// Build rows

/** Timed runs per side in the cold-build, small no-op and push rows, after one warm-up round. */
const buildRuns = 7;
/** Timed runs per side in the 1 GiB no-op row, after one warm-up round. */
const largeRuns = 5;
/** Runs per side of the peak-memory rows. Each one streams the whole 1 GiB context. */
const memoryRuns = 3;
/** In-process calls of prepareImage on the 1 GiB context. */
const prepareCalls = 3;

const largeFileCount = 20_000;
const largeTotalBytes = 2 ** 30;
const largeFileBytes = 50 * 1024;
/** Files that share the bytes left after the 50 KiB files, so that the total is exactly 1 GiB. */
const largeBigFileCount = 10;
const filesPerDirectory = 200;

/** Random bytes the RUN step writes, so that every image built has a new layer to push. */
const runStepBytes = 4 * 2 ** 20;
const benchRegistry = "127.0.0.1:5000";
/** Repository prefix of every tag the build rows create, locally and in the registry. */
const benchRepositoryPrefix = "modal-image-bench";
const benchImageKey = "bench";
/** Index of the addLocalDir step in the definition, which names its context directory. */
const addLocalDirStep = 1;
/** Generated Dockerfile path inside the context, as `contextDir` and `dockerfilePath` set it. */
const benchDockerfilePath = ".modal-image/Dockerfile";
const benchSourcesPath = `.modal-image/ctx/${addLocalDirStep}`;
const mebibyte = 2 ** 20;

const benchConfigText = `import { defineConfig, Image } from "modal-image";

// A new BENCH_RUN_ID changes the RUN line, so that the build misses the layer cache.
const runId = process.env.BENCH_RUN_ID ?? "0";

export default defineConfig({
  images: {
    ${benchImageKey}: Image.fromRegistry("busybox:latest")
      .runCommands(\`head -c ${runStepBytes} /dev/urandom > /random.bin && echo \${runId} > /run-id\`)
      .addLocalDir("layout/${benchSourcesPath}", "/data"),
  },
});
`;

/**
 * A directory with image.config.ts, where modal-image runs start, and `layout/`, the context
 * that docker build reads. `layout/` has the tool's own context layout: the Dockerfile at
 * `.modal-image/Dockerfile` and the addLocalDir sources under `.modal-image/ctx/1/`. The
 * definition's addLocalDir names that same directory, so both sides read the same files.
 */
interface BuildWorkspace {
  dir: string;
  layout: string;
  sources: string;
}

function createWorkspace(dir: string): BuildWorkspace {
  const layout = path.join(dir, "layout");
  const sources = path.join(layout, benchSourcesPath);
  mkdirSync(sources, { recursive: true });
  writeFileSync(path.join(dir, "image.config.ts"), benchConfigText);
  return { dir, layout, sources };
}

/** Returns `size` bytes that depend only on `seed`: the AES-256-CTR key stream of its SHA-256. */
function seededBytes(seed: string, size: number): Buffer {
  const key = createHash("sha256").update(seed).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function writeSmallSources(sources: string): void {
  writeFileSync(path.join(sources, "README.txt"), "Files of the modal-image build benchmark.\n");
  writeFileSync(path.join(sources, "run.sh"), "#!/bin/sh\necho hello\n", { mode: 0o755 });
  mkdirSync(path.join(sources, "data"));
  for (let i = 0; i < 3; i++) {
    writeFileSync(path.join(sources, "data", `part-${i}.bin`), seededBytes(`small-${i}`, 16_384));
  }
}

/** Writes `largeFileCount` files of `largeTotalBytes` in all, `filesPerDirectory` to a directory. */
function writeLargeSources(sources: string): void {
  const smallCount = largeFileCount - largeBigFileCount;
  const leftover = largeTotalBytes - smallCount * largeFileBytes;
  const bigFileBytes = Math.floor(leftover / largeBigFileCount);
  for (let i = 0; i < largeFileCount; i++) {
    const dir = path.join(
      sources,
      `d${String(Math.floor(i / filesPerDirectory)).padStart(3, "0")}`,
    );
    if (i % filesPerDirectory === 0) mkdirSync(dir);
    let size = largeFileBytes;
    if (i >= smallCount) {
      size =
        i === largeFileCount - 1 ? leftover - bigFileBytes * (largeBigFileCount - 1) : bigFileBytes;
    }
    writeFileSync(
      path.join(dir, `f${String(i).padStart(5, "0")}.bin`),
      seededBytes(`large-${i}`, size),
    );
  }
}

/** Spawns a command that is not timed and returns its stdout, or throws with its stderr. */
function runQuietly(
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
) {
  const result = spawnSync(file, args, {
    ...options,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
    maxBuffer: 64 * mebibyte,
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(
      `${file} ${args.join(" ")} exited with ${result.status ?? result.signal}: ${result.stderr.trim()}`,
    );
  }
  return result.stdout;
}

const dockerEnvironment: NodeJS.ProcessEnv = { ...process.env, DOCKER_BUILDKIT: "0" };

/** Images and registry manifests that the build rows created, so that they can be removed. */
class Created {
  readonly images = new Set<string>();
  readonly manifests: Array<{ repository: string; digest: string }> = [];

  /** Removes the given images, or all recorded ones, with `docker image rm -f`. */
  removeImages(images: Iterable<string> = this.images): void {
    const list = [...images];
    if (list.length === 0) return;
    // An image that is gone already, or shares layers with one removed before it, is no error.
    spawnSync("docker", ["image", "rm", "-f", ...list], { stdio: "ignore" });
    for (const image of list) this.images.delete(image);
  }

  /** Deletes the recorded manifests, which also removes their tags. The registry keeps blobs. */
  async deleteManifests(): Promise<void> {
    for (const { repository, digest } of this.manifests.splice(0)) {
      const url = `http://${benchRegistry}/v2/${repository}/manifests/${digest}`;
      const response = await fetch(url, { method: "DELETE" });
      if (response.status !== 202)
        log(`DELETE ${url} returned HTTP ${response.status}; the tag stays`);
    }
  }
}

/** The fields of one image in `build --json` output that the bench reads. */
interface BuildOutput {
  imageId: string;
  repository?: string;
  digest: string;
  /** True when build found an image of the same definition hash and started no build. */
  cached?: boolean;
}

/** Reads the image ID and, after a push, the repository and digest from `build --json`. */
function parseBuildOutput(stdout: string): BuildOutput {
  const result = JSON.parse(stdout) as { images: BuildOutput[] };
  const [image] = result.images;
  if (!image) throw new Error(`modal-image build --json printed no image: ${stdout}`);
  return image;
}

/** Writes the Dockerfile that `modal-image dockerfile` prints for `runId` into the layout. */
function writeDockerfile(workspace: BuildWorkspace, env: NodeJS.ProcessEnv, runId: string): void {
  const stdout = runQuietly(binPath, ["dockerfile", benchImageKey, "--json"], {
    cwd: workspace.dir,
    env: { ...env, BENCH_RUN_ID: runId },
  });
  const { dockerfile } = JSON.parse(stdout) as { dockerfile: string };
  if (!dockerfile.includes(`"${benchSourcesPath}/"`)) {
    throw new Error(
      `the generated Dockerfile does not copy from ${benchSourcesPath}/:\n${dockerfile}`,
    );
  }
  writeFileSync(path.join(workspace.layout, benchDockerfilePath), dockerfile);
}

/** One side of a build row: untimed set-up that returns the command to time, and a teardown. */
interface Side {
  label: string;
  setup: (round: number) => Timed;
  teardown?: (stdout: string, round: number) => void;
}

/** Times the sides in turns, one run of each per round, like timeSpawns. */
function timeSides(
  name: string,
  sides: readonly Side[],
  warmups: number,
  runs: number,
  cwd: string,
) {
  const times = new Map<string, number[]>(sides.map((side) => [side.label, []]));
  for (let round = 0; round < warmups + runs; round++) {
    for (const side of sides) {
      const command = side.setup(round);
      const { elapsed, stdout } = spawnTimed(command, cwd);
      side.teardown?.(stdout, round);
      if (round >= warmups) times.get(side.label)!.push(elapsed);
    }
    log(`${name}: round ${round + 1} of ${warmups + runs}${round < warmups ? " (warm-up)" : ""}`);
  }
  return new Map([...times].map(([label, values]) => [label, summarize(values)]));
}

interface BuildContext {
  env: NodeJS.ProcessEnv;
  created: Created;
  /** Distinguishes this bench run's cache keys and tags from those of other runs. */
  runTag: string;
  /** Whether `modal-image build --help` lists `--force`. */
  hasForce: boolean;
  /** Timed runs per row, and how many of them `build --json` reported as `cached`. */
  cachedRuns: Map<string, { cached: number; runs: number }>;
}

function countCached(context: BuildContext, row: string, output: BuildOutput): void {
  const counts = context.cachedRuns.get(row) ?? { cached: 0, runs: 0 };
  counts.runs += 1;
  if (output.cached === true) counts.cached += 1;
  context.cachedRuns.set(row, counts);
}

function cliBuild(label: string, env: NodeJS.ProcessEnv, extra: string[] = []): Timed {
  return { label, file: binPath, args: ["build", benchImageKey, "--json", ...extra], env };
}

function dockerBuild(label: string, workspace: BuildWorkspace, args: string[]): Timed {
  const dockerfile = path.join(workspace.layout, benchDockerfilePath);
  return {
    label,
    file: "docker",
    args: ["build", "-q", ...args, "-f", dockerfile, workspace.layout],
    env: dockerEnvironment,
  };
}

const coldCliLabel = "modal-image build";
const coldDockerLabel = "DOCKER_BUILDKIT=0 docker build -q";
const coldLabelledLabel = "DOCKER_BUILDKIT=0 docker build -q --label";
/**
 * The label modal-image puts on every image. The classic builder applies `--label` as one more
 * LABEL step, so this docker side shows what that step costs.
 */
const definitionLabelKey = "dev.modal-image.definition";

function clearBuildCache(created: Created): void {
  created.removeImages();
  runQuietly("docker", ["builder", "prune", "-af"]);
}

/** Builds with an empty layer cache above busybox:latest: a new RUN line each run. */
function measureColdBuild(workspace: BuildWorkspace, context: BuildContext) {
  const { env, created, runTag } = context;
  const cli: Side = {
    label: coldCliLabel,
    setup: (round) => {
      clearBuildCache(created);
      return cliBuild(coldCliLabel, { ...env, BENCH_RUN_ID: `${runTag}-cold-${round}-cli` });
    },
    teardown: (stdout) => created.images.add(parseBuildOutput(stdout).imageId),
  };
  const docker: Side = {
    label: coldDockerLabel,
    setup: (round) => {
      clearBuildCache(created);
      const runId = `${runTag}-cold-${round}-docker`;
      writeDockerfile(workspace, env, runId);
      return dockerBuild(coldDockerLabel, workspace, [
        "-t",
        `${benchRepositoryPrefix}/cold:${runId}`,
      ]);
    },
    teardown: (stdout) => created.images.add(stdout.trim()),
  };
  const labelled: Side = {
    label: coldLabelledLabel,
    setup: (round) => {
      clearBuildCache(created);
      const runId = `${runTag}-cold-${round}-labelled`;
      writeDockerfile(workspace, env, runId);
      return dockerBuild(coldLabelledLabel, workspace, [
        "--label",
        `${definitionLabelKey}=${runId}`,
        "-t",
        `${benchRepositoryPrefix}/cold:${runId}`,
      ]);
    },
    teardown: (stdout) => created.images.add(stdout.trim()),
  };
  const samples = timeSides("cold build", [cli, docker, labelled], 1, buildRuns, workspace.dir);
  clearBuildCache(created);
  return samples;
}

/** The label of `modal-image dockerfile`: Node start-up and the config load, no context read. */
const dockerfileLabel = "modal-image dockerfile";

function cliDockerfile(env: NodeJS.ProcessEnv): Timed {
  return { label: dockerfileLabel, file: binPath, args: ["dockerfile", benchImageKey], env };
}

/**
 * Builds the unchanged definition again, after one warm-up build on each side. With `floor`,
 * `modal-image dockerfile` takes turns too, as the time that no modal-image command goes below.
 * The images stay until the caller removes them.
 */
function measureNoOp(
  name: string,
  workspace: BuildWorkspace,
  context: BuildContext,
  runs: number,
  floor = false,
) {
  const { env, created, runTag } = context;
  const runId = `${runTag}-${name}`;
  const cliEnv = { ...env, BENCH_RUN_ID: runId };
  writeDockerfile(workspace, env, runId);
  const cli: Side = {
    label: `modal-image build, unchanged`,
    setup: () => cliBuild(`modal-image build, unchanged`, cliEnv),
    teardown: (stdout, round) => {
      const output = parseBuildOutput(stdout);
      created.images.add(output.imageId);
      if (round > 0) countCached(context, `no-op, ${name}`, output);
    },
  };
  const dockerLabel = "docker build -q, warm cache";
  const docker: Side = {
    label: dockerLabel,
    setup: () =>
      dockerBuild(dockerLabel, workspace, ["-t", `${benchRepositoryPrefix}/${name}:latest`]),
    teardown: (stdout) => created.images.add(stdout.trim()),
  };
  const sides = [cli, docker];
  if (floor) sides.push({ label: dockerfileLabel, setup: () => cliDockerfile(cliEnv) });
  return timeSides(`no-op, ${name}`, sides, 1, runs, workspace.dir);
}

/**
 * Pushes an image built beforehand to a new repository. The modal-image side runs `build` with
 * the registry set, so it also loads the config, streams the context and gets every step from
 * the layer cache. Each side pushes its own image, so that neither finds the other's RUN layer
 * in the registry already.
 */
async function measurePush(workspace: BuildWorkspace, context: BuildContext) {
  const { env, created, runTag } = context;
  const repositoryBase = `${benchRegistry}/${benchRepositoryPrefix}/push-${runTag}`;
  const cliLabel = "modal-image build, cached, with push";
  const dockerLabel = "docker push";
  const cli: Side = {
    label: cliLabel,
    setup: (round) => {
      const runEnv = { ...env, BENCH_RUN_ID: `${runTag}-push-${round}-cli` };
      created.images.add(
        parseBuildOutput(
          runQuietly(binPath, ["build", benchImageKey, "--json"], {
            cwd: workspace.dir,
            env: runEnv,
          }),
        ).imageId,
      );
      return cliBuild(cliLabel, {
        ...runEnv,
        MODAL_IMAGE_REGISTRY: `${repositoryBase}-${round}-cli`,
      });
    },
    teardown: (stdout, round) => {
      const output = parseBuildOutput(stdout);
      const { repository, digest } = output;
      if (round > 0) countCached(context, "push", output);
      if (!repository) throw new Error(`modal-image build pushed nothing: ${stdout}`);
      created.manifests.push({ repository: repository.slice(benchRegistry.length + 1), digest });
    },
  };
  let dockerTarget = "";
  const docker: Side = {
    label: dockerLabel,
    setup: (round) => {
      const runId = `${runTag}-push-${round}-docker`;
      writeDockerfile(workspace, env, runId);
      const imageId = runQuietly(
        "docker",
        ["build", "-q", "-f", path.join(workspace.layout, benchDockerfilePath), workspace.layout],
        { env: dockerEnvironment },
      ).trim();
      created.images.add(imageId);
      dockerTarget = `${repositoryBase}-${round}-docker:latest`;
      runQuietly("docker", ["tag", imageId, dockerTarget]);
      return { label: dockerLabel, file: "docker", args: ["push", dockerTarget] };
    },
    teardown: (stdout) => {
      const digest = /digest: (sha256:[0-9a-f]{64})/.exec(stdout)?.[1];
      if (!digest) throw new Error(`docker push printed no digest: ${stdout}`);
      const repository = dockerTarget.slice(
        benchRegistry.length + 1,
        dockerTarget.lastIndexOf(":"),
      );
      created.manifests.push({ repository, digest });
    },
  };
  try {
    return timeSides("push", [cli, docker], 1, buildRuns, workspace.dir);
  } finally {
    created.removeImages();
    await created.deleteManifests();
  }
}

/** Wraps a command in `/usr/bin/time -f %M`, which writes its peak RSS in KiB to `reportFile`. */
function underTime(command: Timed, reportFile: string): Timed {
  return {
    ...command,
    file: "/usr/bin/time",
    args: ["-o", reportFile, "-f", "%M", command.file, ...command.args],
  };
}

function readPeakMiB(reportFile: string): number {
  const kib = Number(readFileSync(reportFile, "utf8").trim().split("\n").at(-1));
  if (!Number.isFinite(kib)) throw new Error(`${reportFile} contains no peak RSS value`);
  return kib / 1024;
}

/**
 * Measures the peak RSS of the unchanged 1 GiB build, which streams no context, and of
 * `modal-image dockerfile`, which reads no context, to show where the memory of a build goes.
 */
function measureFloorPeaks(workspace: BuildWorkspace, context: BuildContext, scratch: string) {
  const reportFile = path.join(scratch, "time-report");
  const cliEnv = { ...context.env, BENCH_RUN_ID: `${context.runTag}-large` };
  const commands = [cliBuild("modal-image build, unchanged", cliEnv), cliDockerfile(cliEnv)];
  const peaks = new Map<string, number[]>(commands.map((command) => [command.label, []]));
  for (let round = 0; round < memoryRuns; round++) {
    for (const command of commands) {
      spawnTimed(underTime(command, reportFile), workspace.dir);
      peaks.get(command.label)!.push(readPeakMiB(reportFile));
    }
  }
  return new Map([...peaks].map(([label, values]) => [label, summarize(values)]));
}

interface MemoryResult {
  /** Peak RSS in MiB per command. */
  peak: Map<string, Sample>;
  /** Wall-clock time of the same runs. */
  time: Map<string, Sample>;
}

/**
 * Runs each build under `/usr/bin/time -f %M` without the layer cache, so that the whole context
 * goes to the daemon, and records the peak RSS of the client process. The last image of each
 * side stays, as the warm cache of the 1 GiB no-op row.
 */
function measureMemory(
  workspace: BuildWorkspace,
  context: BuildContext,
  scratch: string,
): MemoryResult {
  const { env, created, runTag } = context;
  const runId = `${runTag}-large`;
  writeDockerfile(workspace, env, runId);
  const cliFlags = context.hasForce ? ["--no-cache", "--force"] : ["--no-cache"];
  const cliLabel = `modal-image build ${cliFlags.join(" ")}`;
  const dockerLabel = "docker build -q --no-cache";
  const peaks = new Map<string, number[]>([
    [cliLabel, []],
    [dockerLabel, []],
  ]);
  const reportFile = path.join(scratch, "time-report");
  const previous = new Map<string, string>();
  const keepLatest = (label: string, imageId: string) => {
    const old = previous.get(label);
    if (old !== undefined && old !== imageId) created.removeImages([old]);
    previous.set(label, imageId);
    created.images.add(imageId);
    peaks.get(label)!.push(readPeakMiB(reportFile));
  };
  const cli: Side = {
    label: cliLabel,
    setup: () =>
      underTime(cliBuild(cliLabel, { ...env, BENCH_RUN_ID: runId }, cliFlags), reportFile),
    teardown: (stdout) => keepLatest(cliLabel, parseBuildOutput(stdout).imageId),
  };
  const docker: Side = {
    label: dockerLabel,
    setup: () =>
      underTime(
        dockerBuild(dockerLabel, workspace, [
          "--no-cache",
          "-t",
          `${benchRepositoryPrefix}/large:latest`,
        ]),
        reportFile,
      ),
    teardown: (stdout) => keepLatest(dockerLabel, stdout.trim()),
  };
  const time = timeSides("peak memory, 1 GiB", [cli, docker], 0, memoryRuns, workspace.dir);
  const peak = new Map([...peaks].map(([label, values]) => [label, summarize(values)]));
  return { peak, time };
}

type LoadModule = typeof import("../src/config/load.js");
type PrepareModule = typeof import("../src/build/prepare.js");

/**
 * Times prepareImage in this process with the options that build passes: collecting the 1 GiB
 * context and hashing it, with file digests from the cache in `home` that the build runs filled.
 */
async function measurePrepare(workspace: BuildWorkspace, home: string, local: LocalIndexModule) {
  const { loadConfig } = await loadSource<LoadModule>("config/load.js");
  const { prepareImage } = await loadSource<PrepareModule>("build/prepare.js");
  const config = await loadConfig({ cwd: workspace.dir });
  const image = config.images.get(benchImageKey)!;
  // NOTE: passed as a variable, so that the call compiles whether or not PrepareOptions has
  // `cacheHome`. A prepareImage without that option reads and hashes every byte instead.
  const options = { baseDir: config.dir, index: new local.LocalIndex(home), cacheHome: home };
  const times: number[] = [];
  for (let i = 0; i < prepareCalls; i++) {
    const start = process.hrtime.bigint();
    await prepareImage(benchImageKey, image, options);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return summarize(times);
}

interface BuildResult {
  cold: Map<string, Sample>;
  noOpSmall: Map<string, Sample>;
  push: Map<string, Sample>;
  memory: MemoryResult;
  noOpLarge: Map<string, Sample>;
  prepareLarge: Sample;
  cachedRuns: BuildContext["cachedRuns"];
}

async function measureBuilds(
  scratch: string,
  local: LocalIndexModule,
  hasForce: boolean,
  created: Created,
): Promise<BuildResult> {
  const home = path.join(scratch, "build-home");
  mkdirSync(home);
  const context: BuildContext = {
    env: cliEnvironment(home),
    created,
    runTag: `${process.pid}-${Date.now().toString(36)}`,
    hasForce,
    cachedRuns: new Map(),
  };
  const small = createWorkspace(path.join(scratch, "build-small"));
  writeSmallSources(small.sources);
  const large = createWorkspace(path.join(scratch, "build-large"));
  try {
    const cold = measureColdBuild(small, context);
    const noOpSmall = measureNoOp("small", small, context, buildRuns, true);
    created.removeImages();
    const push = await measurePush(small, context);

    const started = Date.now();
    writeLargeSources(large.sources);
    log(`1 GiB context: written in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const memory = measureMemory(large, context, scratch);
    const noOpLarge = measureNoOp("large", large, context, largeRuns);
    for (const [label, sample] of measureFloorPeaks(large, context, scratch)) {
      memory.peak.set(label, sample);
    }
    const prepareLarge = await measurePrepare(large, home, local);
    created.removeImages();
    const cachedRuns = context.cachedRuns;
    return { cold, noOpSmall, push, memory, noOpLarge, prepareLarge, cachedRuns };
  } finally {
    created.removeImages();
    await created.deleteManifests();
    spawnSync("docker", ["builder", "prune", "-af"], { stdio: "ignore" });
  }
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

/**
 * Compares `resolve` with the bare Node start, the floor for a Node CLI, against its target: as
 * the machine is set up, and without NODE_EXTRA_CA_CERTS when that was set.
 */
function startupTargets(result: StartupResult): Target[] {
  const limit = 1.3;
  const pairs = [[result.baseline, `modal-image resolve ${benchName}:${tagName(0)}`]];
  if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
    pairs.push(pairs[0]!.map((label) => `${label}, NODE_EXTRA_CA_CERTS unset`));
  }
  return pairs.map(([baseline, command], index) => {
    const value = result.samples.get(command!)!.median / result.samples.get(baseline!)!.median;
    return {
      row: `\`resolve\` ÷ \`${result.baseline}\`${index === 0 ? "" : ", NODE_EXTRA_CA_CERTS unset"}`,
      value: `${value.toFixed(2)}×`,
      target: `≤ ${limit}×`,
      met: value <= limit,
    };
  });
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

/** The code the build rows ran: the commit, uncommitted files under src/, and `--force`. */
interface CodeState {
  head: string;
  changedSources: string[];
  hasForce: boolean;
}

/** Reads the code state with read-only git commands and `build --help`. */
function describeCode(): CodeState {
  const git = (args: string[]) => runQuietly("git", args, { cwd: repoRoot });
  const changed = git(["diff", "--name-only", "HEAD", "--", "src"]);
  const untracked = git(["ls-files", "--others", "--exclude-standard", "--", "src"]);
  const help = runQuietly(binPath, ["build", "--help"]);
  return {
    head: git(["rev-parse", "--short", "HEAD"]).trim(),
    changedSources: `${changed}${untracked}`.split("\n").filter((line) => line !== ""),
    hasForce: /\s--force\b/.test(help),
  };
}

function seconds(value: number): string {
  return (value / 1000).toFixed(2);
}

function buildTimeTable(result: BuildResult): string {
  const groups: Array<[string, Map<string, Sample>]> = [
    ["cold build", result.cold],
    ["no-op, small context", result.noOpSmall],
    ["no-op, 1 GiB context", result.noOpLarge],
    ["push", result.push],
    ["cold for the context, 1 GiB (peak-memory runs)", result.memory.time],
  ];
  const rows = groups.flatMap(([group, samples]) =>
    [...samples].map(([label, sample]) => [
      group,
      `\`${label}\``,
      seconds(sample.median),
      `${seconds(sample.min)}–${seconds(sample.max)}`,
      String(sample.runs),
    ]),
  );
  return table(["row", "command", "median s", "range s", "runs"], rows);
}

function memoryTable(memory: MemoryResult): string {
  const rows = [...memory.peak].map(([label, sample]) => [
    `\`${label}\``,
    sample.median.toFixed(1),
    `${sample.min.toFixed(1)}–${sample.max.toFixed(1)}`,
    String(sample.runs),
  ]);
  return table(["command", "median peak RSS MiB", "range MiB", "runs"], rows);
}

interface Target {
  row: string;
  value: string;
  target: string;
  met: boolean;
}

/** Returns the median of the first sample over the median of the second. */
function sideRatio(samples: Map<string, Sample>): number {
  const [first, second] = [...samples.values()];
  return first!.median / second!.median;
}

function buildTargets(result: BuildResult): Target[] {
  const compare = (row: string, samples: Map<string, Sample>, limit: number): Target => {
    const value = sideRatio(samples);
    return { row, value: `${value.toFixed(2)}×`, target: `≤ ${limit}×`, met: value <= limit };
  };
  const peak = [...result.memory.peak.values()][0]!.median;
  return [
    compare("cold build ÷ `docker build`", result.cold, 1.05),
    compare("no-op, small ÷ `docker build -q`, warm", result.noOpSmall, 1.5),
    compare("no-op, 1 GiB ÷ `docker build -q`, warm", result.noOpLarge, 0.1),
    compare("build with push ÷ `docker push`", result.push, 1.05),
    {
      row: "peak RSS of `modal-image build`, 1 GiB context",
      value: `${peak.toFixed(1)} MiB`,
      target: "< 150 MiB",
      met: peak < 150,
    },
  ];
}

function targetTable(targets: readonly Target[]): string {
  return table(
    ["comparison", "measured", "target", "met"],
    targets.map((target) => [
      target.row,
      target.value,
      target.target,
      target.met ? "met" : "not met",
    ]),
  );
}

function median(samples: Map<string, Sample>, label: string): number {
  const sample = samples.get(label);
  if (!sample) throw new Error(`no row ${label}`);
  return sample.median;
}

/** Explains each target that was not met with the reference rows measured in the same run. */
function limitNotes(result: BuildResult): string[] {
  const targets = buildTargets(result);
  const floor = median(result.noOpSmall, dockerfileLabel);
  const floorText =
    `\`${dockerfileLabel}\`, which starts Node and loads the config but reads no context, ` +
    `takes ${seconds(floor)} s (median, small-context no-op row)`;
  const [cliCold, dockerCold] = [...result.cold.values()].map((sample) => sample.median);
  const [cliNoOpSmall, dockerNoOpSmall] = [...result.noOpSmall.values()].map((s) => s.median);
  const [cliNoOpLarge] = [...result.noOpLarge.values()].map((sample) => sample.median);
  const [cliPush, dockerPush] = [...result.push.values()].map((sample) => sample.median);
  const [cliLargeCold, dockerLargeCold] = [...result.memory.time.values()].map((s) => s.median);
  const peakUnchanged = result.memory.peak.get("modal-image build, unchanged")!.median;
  const peakFloor = result.memory.peak.get(dockerfileLabel)!.median;
  const peakCold = [...result.memory.peak.values()][0]!.median;
  const notes: string[] = [];
  const add = (index: number, text: string) => {
    if (!targets[index]!.met) notes.push(`- ${targets[index]!.row}: ${text}`);
  };
  const labelledCold = median(result.cold, coldLabelledLabel);
  add(
    0,
    `modal-image takes ${seconds(cliCold! - dockerCold!)} s longer than docker build; ${floorText}. ` +
      `The definition label is one more step in the classic builder: docker build with the same ` +
      `\`--label\` takes ${seconds(labelledCold)} s, ${ratio(labelledCold, dockerCold!)} of docker ` +
      `build without it, and modal-image takes ${ratio(cliCold!, labelledCold)} of that.`,
  );
  add(
    1,
    `${floorText}, already ${ratio(floor, dockerNoOpSmall!)} of the warm \`docker build -q\`, ` +
      (floor / dockerNoOpSmall! > 1.5
        ? "so Node start-up and the config load alone exceed the target. "
        : "") +
      `The no-op build adds ${seconds(cliNoOpSmall! - floor)} s to that.`,
  );
  add(
    2,
    `${floorText}; \`prepareImage\` with the options that build passes, in this process on the ` +
      `TypeScript sources (compiled by jiti) after the build runs filled the file-digest cache, takes ` +
      `${seconds(result.prepareLarge.median)} s (median of ${prepareCalls} calls) to collect ` +
      `and hash the 20,000 files. Together that is ` +
      `${seconds(floor + result.prepareLarge.median)} s of the ${seconds(cliNoOpLarge!)} s ` +
      "median; the rest is not broken down here.",
  );
  add(
    3,
    `the modal-image side also does the work of the small-context no-op build, which ` +
      `alone takes ${seconds(cliNoOpSmall!)} s, ${ratio(cliNoOpSmall!, dockerPush!)} ` +
      `of \`docker push\` (${seconds(dockerPush!)} s), and the whole side ${seconds(cliPush!)} s.`,
  );
  add(
    4,
    `\`modal-image build\` of the unchanged 1 GiB definition, which streams no context, peaks ` +
      `at ${peakUnchanged.toFixed(1)} MiB (${((100 * peakUnchanged) / peakCold).toFixed(0)}% of ` +
      `the cold build's ${peakCold.toFixed(1)} MiB), and \`${dockerfileLabel}\` at ` +
      `${peakFloor.toFixed(1)} MiB.`,
  );
  const lines =
    notes.length === 0 ? [] : ["Targets not met, with the rows that bound them:", "", ...notes, ""];
  lines.push(
    `With the whole 1 GiB context streamed (the peak-memory runs), \`modal-image build\` took ` +
      `${ratio(cliLargeCold!, dockerLargeCold!)} as long as \`docker build\`.`,
  );
  return lines;
}

/** States how many timed runs of a row reused an image instead of starting a build. */
function cachedText(result: BuildResult, row: string): string {
  const counts = result.cachedRuns.get(row) ?? { cached: 0, runs: 0 };
  return (
    `In ${counts.cached} of ${counts.runs} timed runs, \`build --json\` reported \`cached: true\`: ` +
    "modal-image found an image of the same definition hash and started no build."
  );
}

function buildSection(result: BuildResult, code: CodeState): string[] {
  const changed =
    code.changedSources.length === 0
      ? "no uncommitted changes under src/"
      : `uncommitted changes in ${code.changedSources.map((file) => `\`${file}\``).join(", ")}`;
  return [
    "## Build",
    "",
    `Code: commit ${code.head}, ${changed}; \`modal-image build --help\` ` +
      `${code.hasForce ? "lists" : "does not list"} \`--force\`.`,
    "",
    "Each row compares `modal-image build` with plain `docker` (classic builder, " +
      "`DOCKER_BUILDKIT=0`) doing the same work in the same run, timed as above, one run of " +
      'each per round. The definition is `Image.fromRegistry("busybox:latest")`, a ' +
      `\`runCommands\` step that writes ${runStepBytes / mebibyte} MiB from /dev/urandom and a run ` +
      "id, and an `addLocalDir`. The docker side builds the Dockerfile that `modal-image " +
      `dockerfile\` prints, from a context laid out as the tool lays it out: the Dockerfile at ` +
      `\`${benchDockerfilePath}\` (passed with \`-f\`) and the sources under ` +
      `\`${benchSourcesPath}/\`. The definition's \`addLocalDir\` names that same directory. ` +
      "No registry is set, except in the push row. Every image, tag and registry manifest the " +
      "rows create is removed at the end; the registry keeps the blobs.",
    "",
    "- **Cold build**: the small context (5 files, 48 KiB). Before every run the images the " +
      "rows built are removed and `docker builder prune -af` runs, both untimed, and each run " +
      "gets a new run id, so the RUN and COPY steps miss the layer cache; only busybox:latest " +
      "is cached. Neither side uses `--no-cache`. One warm-up round. A third side runs the " +
      "same docker build with `--label`, as the tool labels every image with its definition " +
      "hash; the target compares with docker build without it.",
    "- **No-op, small context**: `modal-image build` of the unchanged definition against " +
      "`docker build -q` of the same Dockerfile and context, after one warm-up build of each, " +
      "so docker gets every step from the layer cache. " +
      cachedText(result, "no-op, small"),
    `- **No-op, 1 GiB context**: as above, with an \`addLocalDir\` of ` +
      `${largeFileCount.toLocaleString("en-US")} files (${(largeFileCount - largeBigFileCount).toLocaleString("en-US")} ` +
      `of 50 KiB and ${largeBigFileCount} of about 4.8 MiB, 1 GiB in all, seeded pseudo-random ` +
      "bytes), written once per bench run. The warm-up is a no-op build after the peak-memory " +
      "runs below. " +
      cachedText(result, "no-op, large"),
    "- **Push**: before each run, untimed, each side builds its own image of the definition " +
      "with a new run id, so its 4 MiB RUN layer is new to the registry; the busybox and COPY " +
      "layers are in the registry from earlier runs and are mounted or skipped. The " +
      "modal-image side then runs `modal-image build` with `MODAL_IMAGE_REGISTRY` set to a new " +
      `repository under \`${benchRegistry}/${benchRepositoryPrefix}/\`: it loads the config and ` +
      "hashes the definition, then either tags the local image of the same definition hash " +
      "and pushes it, or builds with every step from the layer cache and pushes. " +
      cachedText(result, "push") +
      " The docker " +
      "side tags its image into another new repository (untimed) and runs `docker push`. Each " +
      "side pushes its own image because the daemon would mount the other side's RUN layer " +
      "instead of uploading it.",
    `- **Peak memory**: ${memoryRuns} builds of the 1 GiB definition per side under ` +
      "`/usr/bin/time -f %M`, with `--no-cache`" +
      (code.hasForce ? " (and `--force` for modal-image)" : "") +
      ", so the whole context is streamed and copied. The figure is the maximum RSS of the " +
      "client process (node for modal-image, the docker CLI for docker); the daemon's memory " +
      `is in neither. After the 1 GiB no-op row, ${memoryRuns} more runs each measure ` +
      "`modal-image build` of the unchanged definition, which streams no context, and " +
      "`modal-image dockerfile`, which reads none.",
    "",
    buildTimeTable(result),
    "",
    memoryTable(result.memory),
    "",
    "### Targets",
    "",
    targetTable(buildTargets(result)),
    "",
    ...limitNotes(result),
  ];
}

interface Report {
  machine: Machine;
  startup: StartupResult;
  small: IndexResult;
  large: IndexResult;
  sizes: [IndexSize, IndexSize];
  builds: BuildResult;
  code: CodeState;
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
      "`resolve` and `tags` on the local index run through the fast path of `bin/modal-image`, " +
      "one CommonJS file that loads neither the ES module loader's chunks nor commander; " +
      "`history` and `node dist/bundle/cli.js` show the full CLI.",
    "",
    startupTable(report.startup),
    ...caCertsNote(),
    "",
    targetTable(startupTargets(report.startup)),
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
      `${libraryCalls} calls in one process, on the TypeScript sources compiled by jiti, and each ` +
      "`LocalIndex.publish` call includes one fsync (`datasync`) of the tag log.",
    "",
    indexTable(report.small, report.large, report.sizes),
    "",
    ...buildSection(report.builds, report.code),
    "",
    "## Not measured yet",
    "",
    "- peak memory (maximum RSS) of `resolve` and `tags`",
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
    await loadSource<LocalIndexModule>("index-store/local.js"),
    await loadSource<LogModule>("index-store/log.js"),
  ];
  const scratch = mkdtempSync(path.join(os.tmpdir(), "modal-image-bench-"));
  const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
  const created = new Created();
  const onSignal = () => {
    // NOTE: manifests pushed before the signal stay in the registry, because deleting them is
    // asynchronous. Their repositories start with modal-image-bench/.
    created.removeImages();
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
    const code = describeCode();
    const builds = await measureBuilds(scratch, modules[0], code.hasForce, created);
    // The other rows take minutes, so the code may have changed meanwhile.
    const codeAfter = describeCode();
    if (JSON.stringify(codeAfter) !== JSON.stringify(code)) {
      log(
        `the code changed during the build rows: ${JSON.stringify(code)} -> ${JSON.stringify(codeAfter)}`,
      );
    }
    const page = renderPage({ machine, startup, small, large, sizes, builds, code });
    await writePage(page);
    process.stdout.write(page);
    log(`wrote ${path.relative(process.cwd(), pagePath)}`);
  } finally {
    removeScratch();
  }
}

await main();
