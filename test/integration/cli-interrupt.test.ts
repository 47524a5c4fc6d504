import fs from "node:fs/promises";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  binPath,
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { docker, removeImages } from "../helpers/docker.js";
import { startRegistryProxy, type RegistryProxy } from "../helpers/fault-servers.js";
import { listTags } from "../helpers/registry.js";
import { openRegistry } from "../helpers/stack.js";

/** A CLI run that must end this soon after one signal; a hang fails the test. */
const exitTimeoutMs = 30_000;

const signals = ["SIGINT", "SIGTERM"] as const;

/** Starts the CLI in the background with a temporary directory of its own as TMPDIR. */
function startCli(project: TestProject, args: readonly string[], tmpdir: string) {
  return execa(binPath, [...args], {
    cwd: project.dir,
    env: {
      MODAL_IMAGE_HOME: project.home,
      MODAL_IMAGE_REGISTRY: undefined,
      NO_COLOR: "1",
      TMPDIR: tmpdir,
    },
    reject: false,
    stdin: "ignore",
  });
}

/** Resolves once stderr has contained `text`. */
function stderrContains(child: ResultPromise, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) resolve();
    });
  });
}

/** Waits for `ready`, and fails with the CLI's output if the CLI exits before it. */
async function whileRunning(child: ResultPromise, ready: Promise<void>): Promise<void> {
  const exited = child.then((result) => {
    throw new Error(`the CLI exited with ${result.exitCode} too early:\n${String(result.stderr)}`);
  });
  // The CLI exits later in every test, which must not count as an unhandled rejection.
  exited.catch(() => undefined);
  await Promise.race([ready, exited]);
}

/** Sends one signal and waits for the exit, failing the test if the exit does not come. */
async function interrupt(child: ResultPromise, signal: NodeJS.Signals) {
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the CLI did not exit within ${exitTimeoutMs} ms of one ${signal}`));
    }, exitTimeoutMs);
  });
  try {
    return await Promise.race([child, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Lists the files a run left in its TMPDIR, as paths relative to it. jiti's transpile cache of
 * the config (`jiti/`) is left out, because every run writes it, interrupted or not.
 */
async function temporaryFiles(tmpdir: string): Promise<string[]> {
  const files = await filesUnder(tmpdir);
  return files.filter((file) => !file.startsWith(`jiti${path.sep}`));
}

/** Lists the files under a directory, recursively, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)));
}

/** Returns the containers, in any state, whose command contains `marker`. */
async function containersWith(marker: string): Promise<string[]> {
  const rows = await docker([
    "ps",
    "-a",
    "--no-trunc",
    "--format",
    "{{.ID}} {{.Status}} {{.Command}}",
  ]);
  return rows.split("\n").filter((row) => row.includes(marker));
}

describe.skipIf(skipIntegration)("build interrupted", () => {
  let project: TestProject;
  const name = uniqueName("interrupt-build");

  beforeAll(async () => {
    project = await createProject();
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  for (const signal of signals) {
    it(`stops the build on ${signal}`, async () => {
      const marker = `${signal}-${path.basename(project.dir)}`;
      // The step prints 42-MARKER, which its own Dockerfile line does not contain.
      await project.write(
        "image.config.ts",
        configText(
          `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
            .runCommands("echo $((6*7))-${marker}; sleep 300") }`,
        ),
      );
      const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
      const child = startCli(project, ["build", "--verbose", "--publish", name], tmpdir);
      await whileRunning(child, stderrContains(child, `42-${marker}`));

      const result = await interrupt(child, signal);
      expect(result.exitCode).toBe(130);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain("interrupted");
      expect(result.stderr).not.toContain("    at ");
      expect(await containersWith(marker)).toEqual([]);
      expect(await temporaryFiles(tmpdir)).toEqual([]);
      expect((await filesUnder(project.home)).filter((file) => file.endsWith(".tmp"))).toEqual([]);
      expect((await project.cli(["resolve", name])).exitCode).toBe(3);
    });
  }
});

describe.skipIf(skipIntegration)("registry work interrupted", () => {
  let project: TestProject;
  let proxy: RegistryProxy | undefined;
  const name = uniqueName("interrupt-registry");
  const pushedRepositories: string[] = [];

  beforeAll(async () => {
    project = await createProject();
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  afterAll(async () => {
    await removeImages(...pushedRepositories);
    await project.cleanup();
  });

  for (const signal of signals) {
    it(`publishes nothing on ${signal}`, async () => {
      // The registry proxy keeps every blob upload waiting, so the push stalls until the signal.
      proxy = await startRegistryProxy(
        (method, url) => method === "POST" && url.includes("/blobs/uploads/"),
        { kind: "stall" },
      );
      pushedRepositories.push(`${proxy.address}/${name}`);
      await project.write(
        "image.config.ts",
        configText(
          `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
            .runCommands("echo ${signal} > /layer-${signal}") }`,
          proxy.address,
        ),
      );
      const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
      const child = startCli(project, ["build", "--publish", name], tmpdir);
      await whileRunning(child, proxy.faulted);

      const result = await interrupt(child, signal);
      expect(result.exitCode).toBe(130);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain(`push of ${proxy.address}/${name}`);
      expect(result.stderr).toContain("interrupted");
      expect(result.stderr).not.toContain("    at ");
      expect(await temporaryFiles(tmpdir)).toEqual([]);
      expect((await project.cli(["resolve", name])).exitCode).toBe(3);
      // The proxy forwards to the open registry, so a tag would have landed there.
      expect(await listTags(openRegistry, name)).toEqual([]);
    });
  }

  for (const args of [
    ["resolve", name, "--index", "registry"],
    ["tags", name, "--index", "registry"],
    ["build", "--publish", name],
  ]) {
    it(`stops ${args[0]} waiting on the registry`, async () => {
      // The version check, manifests and tag lists wait forever, as on a hung registry.
      proxy = await startRegistryProxy(
        (_method, url) => url === "/v2/" || /\/(manifests|tags)\//.test(url),
        { kind: "stall" },
      );
      await project.write(
        "image.config.ts",
        configText(
          `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest") }`,
          proxy.address,
        ),
      );
      const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
      const child = startCli(project, args, tmpdir);
      await whileRunning(child, proxy.faulted);

      const result = await interrupt(child, "SIGINT");
      expect(result.exitCode).toBe(130);
      expect(result.stdout).toBe("");
      expect(result.stderr).toContain(`registry ${proxy.address}`);
      expect(result.stderr).toContain("interrupted");
      expect(result.stderr).not.toContain("    at ");
      expect(await temporaryFiles(tmpdir)).toEqual([]);
      expect((await project.cli(["resolve", name])).exitCode).toBe(3);
    });
  }
});

describe.skipIf(skipIntegration)("work that ignores the signal", () => {
  let project: TestProject;

  beforeAll(async () => {
    project = await createProject();
  });

  afterAll(async () => {
    await project.cleanup();
  });

  it("exits 130 after the cleanup time", async () => {
    // The config never finishes loading and watches no signal, so only the grace timer ends it.
    await project.write(
      "image.config.ts",
      'console.error("loading");\nawait new Promise(() => setInterval(() => undefined, 1000));\nexport default {};\n',
    );
    const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
    const child = startCli(project, ["build"], tmpdir);
    await whileRunning(child, stderrContains(child, "loading"));

    const result = await interrupt(child, "SIGINT");

    expect(result.exitCode).toBe(130);
    expect(result.stderr).toContain("cleanup did not finish within 10 s");
  });
});

describe.skipIf(skipIntegration)("config load interrupted", () => {
  let project: TestProject;
  let imageId: string;

  beforeAll(async () => {
    project = await createProject();
    imageId = await docker(["image", "inspect", "--format", "{{.Id}}", "busybox:latest"]);
    // The config takes a few seconds to load, so a signal arrives while it loads.
    await project.write(
      "image.config.ts",
      [
        'import { Image } from "modal-image";',
        'console.error("loading");',
        "await new Promise((resolve) => setTimeout(resolve, 3000));",
        "export default { images: { app: Image.fromScratch() } };",
        "",
      ].join("\n"),
    );
    const seeded = await project.cli(["publish", "--index", "local", imageId, "seed"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
  });

  afterAll(async () => {
    await project.cleanup();
  });

  it.each(signals)("moves no name on %s", async (signal) => {
    const target = `copy-${signal.toLowerCase()}`;
    const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
    const child = startCli(project, ["publish", "seed", target], tmpdir);
    await whileRunning(child, stderrContains(child, "loading"));

    const result = await interrupt(child, signal);

    expect(result.exitCode).toBe(130);
    expect(result.stderr).toContain("interrupted");
    const lookup = await project.cli(["resolve", "--index", "local", target]);
    expect(lookup.exitCode).toBe(3);
  });

  it("reports a read that finished after the signal", async () => {
    const tmpdir = await fs.mkdtemp(path.join(project.dir, "tmp-"));
    const child = startCli(project, ["dockerfile", "app"], tmpdir);
    await whileRunning(child, stderrContains(child, "loading"));

    const result = await interrupt(child, "SIGINT");

    expect(result.exitCode).toBe(130);
  });
});
