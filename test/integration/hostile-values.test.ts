import { readFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { docker, imageConfig, removeImages } from "../helpers/docker.js";
import { mapWithConcurrency } from "../../src/util/concurrency.js";
import { hostileKeys, hostileValues, type HostileKey } from "../helpers/hostile-values.js";

// An argument vector cannot carry NUL, so the CLI never receives one.
const argumentKeys = hostileKeys.filter((key) => key !== "nul");
const digest = `sha256:${"a".repeat(64)}`;

// Pointing the daemon and the registry at nothing proves that a rejection came first: contacting
// either would fail with exit 1.
const unreachable = {
  DOCKER_HOST: "unix:///nonexistent/modal-image-test.sock",
  MODAL_IMAGE_REGISTRY: "127.0.0.1:9",
};

const argumentPositions: ReadonlyArray<[string, (value: string) => string[]]> = [
  ["build IMAGE", (value) => ["build", value]],
  ["build --publish", (value) => ["build", "--publish", value]],
  ["build --expect", (value) => ["build", "--publish", "app", "--expect", value]],
  ["build --registry", (value) => ["build", "--registry", value]],
  ["build --parallel", (value) => ["build", "--parallel", value]],
  ["build -c", (value) => ["build", "-c", value]],
  ["resolve --index", (value) => ["resolve", "app", "--index", value]],
  ["publish SOURCE", (value) => ["publish", value, "app"]],
  ["publish NAME", (value) => ["publish", digest, value]],
  ["publish --expect", (value) => ["publish", digest, "app", "--expect", value]],
  ["resolve NAME", (value) => ["resolve", value]],
  ["tags NAME", (value) => ["tags", value]],
  ["history NAME", (value) => ["history", value]],
  ["rollback NAME", (value) => ["rollback", value]],
  ["rollback --to", (value) => ["rollback", "app", "--to", value]],
  ["untag NAME", (value) => ["untag", value]],
  ["run NAME", (value) => ["run", value]],
  ["dockerfile IMAGE", (value) => ["dockerfile", value]],
];

/** Reports whether the output shows the value, as it is or escaped as a JSON string. */
function namesValue(output: string, value: string): boolean {
  const escaped = JSON.stringify(value).slice(1, -1);
  return output.includes(value.slice(0, 60)) || output.includes(escaped.slice(0, 60));
}

describe("hostile command arguments", () => {
  let project: TestProject;

  beforeAll(async () => {
    project = await createProject();
    await project.write(
      "image.config.ts",
      configText(`{ app: Image.fromRegistry("busybox:latest") }`),
    );
  });

  afterAll(async () => {
    await project.cleanup();
  });

  it.each(argumentPositions)("%s exits 2 naming the value", async (_position, args) => {
    const results = await mapWithConcurrency(argumentKeys, 4, (key) =>
      project.cli(args(hostileValues[key]), { env: unreachable }),
    );
    for (const [index, key] of argumentKeys.entries()) {
      const value = hostileValues[key];
      const result = results[index]!;
      expect(result.exitCode, key).toBe(2);
      expect(result.stdout, key).toBe("");
      expect(namesValue(result.stderr, value), `${key}: ${result.stderr}`).toBe(true);
    }
  });

  // The prefix is compared with names as text, so a hostile one matches nothing.
  it("names --prefix filters by text", async () => {
    for (const key of argumentKeys) {
      const result = await project.cli(["names", "--prefix", hostileValues[key]]);
      expect(result.exitCode, key).toBe(0);
      expect(result.stdout, key).toBe("");
    }
  });
});

/** Runs a command in the image and returns its stdout as bytes. */
async function readBytes(reference: string, args: readonly string[]): Promise<Buffer> {
  const result = await execa(
    "docker",
    ["run", "--rm", "--entrypoint", args[0]!, reference, ...args.slice(1)],
    {
      encoding: "buffer",
      stripFinalNewline: false,
    },
  );
  return Buffer.from(result.stdout);
}

function acceptedKeys(exclude: readonly HostileKey[]): HostileKey[] {
  return hostileKeys.filter((key) => !exclude.includes(key));
}

// Which values each method takes is the unit test's table. These reach a real image.
const lineBreaks: HostileKey[] = ["newline", "carriageReturn", "crlf", "nul"];
const envKeys = acceptedKeys([...lineBreaks, "overLineLimit"]);
const runKeys = acceptedKeys(["nul", "overLineLimit", "empty"]);
const pathKeys = acceptedKeys([...lineBreaks, "overLineLimit", "long", "empty"]);
const execKeys = acceptedKeys(["nul", "overLineLimit"]);

/** Returns a script that saves its own command line and exits before the hostile text. */
function runScript(key: HostileKey): string {
  return `cat /proc/$$/cmdline > /run-${key}; exit 0\n${hostileValues[key]}`;
}

describe.skipIf(skipIntegration)("hostile values reach the image", () => {
  let project: TestProject;
  const name = uniqueName("hostile");
  let reference: string;

  beforeAll(async () => {
    project = await createProject();
    await project.write("f.txt", "content\n");
    const env = Object.fromEntries(envKeys.map((key) => [`V_${key}`, hostileValues[key]]));
    const steps = [
      `.env(${JSON.stringify(env)})`,
      ...runKeys.map((key) => `.runCommands(${JSON.stringify(runScript(key))})`),
      ...pathKeys.flatMap((key) => [
        `.workdir(${JSON.stringify(`/wd/${hostileValues[key]}`)})`,
        `.runCommands("pwd > /pwd-${key}")`,
        `.addLocalFile("f.txt", ${JSON.stringify(`/dst/${hostileValues[key]}`)})`,
      ]),
      `.cmd(${JSON.stringify(execKeys.map((key) => hostileValues[key]))})`,
    ];
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")${steps.join("\n")} }`,
      ),
    );
    const result = await project.cli(["build"]);
    expect(result.stderr).not.toContain("error:");
    expect(result.exitCode).toBe(0);
    reference = result.stdout.trim();
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("keeps env values", async () => {
    const config = await imageConfig(reference);
    for (const key of envKeys) expect(config.Env, key).toContain(`V_${key}=${hostileValues[key]}`);
  });

  it("passes RUN scripts to sh byte for byte", async () => {
    for (const key of runKeys) {
      const cmdline = await readBytes(reference, ["cat", `/run-${key}`]);
      expect(cmdline.toString("utf8"), key).toBe(`/bin/sh\0-c\0${runScript(key)}\0`);
    }
  });

  it("runs none of the hostile text", async () => {
    const result = await execa(
      "docker",
      ["run", "--rm", "--entrypoint", "ls", reference, "/pwned"],
      {
        reject: false,
      },
    );
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain("No such file");
  });

  it("keeps working directories and copy destinations", async () => {
    for (const key of pathKeys) {
      const workdir = `/wd/${hostileValues[key]}`;
      const printed = await readBytes(reference, ["cat", `/pwd-${key}`]);
      expect(printed.toString("utf8"), key).toBe(`${workdir}\n`);
      const copied = await readBytes(reference, ["cat", `/dst/${hostileValues[key]}`]);
      expect(copied.toString("utf8"), key).toBe("content\n");
    }
  });

  it("keeps exec-form arguments", async () => {
    const config = await imageConfig(reference);
    expect(config.Cmd).toEqual(execKeys.map((key) => hostileValues[key]));
  });

  it("run passes arguments byte for byte", async () => {
    const published = await project.cli(["build", "--publish", name]);
    expect(published.exitCode).toBe(0);
    const values = execKeys.map((key) => hostileValues[key]);
    const result = await project.cli(["run", name, "--", "printf", "%s\\0", ...values]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split("\0").slice(0, -1)).toEqual(values);
  });
});

describe.skipIf(skipIntegration)("config line ends", () => {
  const projects: TestProject[] = [];
  const name = uniqueName("line-ends");

  afterAll(async () => {
    await removeImages(name);
    for (const project of projects) await project.cleanup();
  });

  // Template literals turn CRLF into LF, as ECMAScript specifies, so both files define the
  // same values, and the definition hash covers the generated Dockerfile and the context.
  it("CRLF and LF configs build the same image", async () => {
    const text = configText(
      `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
        .runCommands(\`echo one > /lines
echo two >> /lines\`)
        .dockerfileCommands(\`ENV A=1 \\\\
  B=2\`)
        .addLocalFile("data.txt", "/data.txt") }`,
    );
    const results = [];
    for (const lineEnd of ["\n", "\r\n"]) {
      const project = await createProject();
      projects.push(project);
      await project.write("data.txt", "same bytes\n");
      await project.write("image.config.ts", text.replaceAll("\n", lineEnd));
      // --force, or the second build would reuse the first image by its definition hash.
      const result = await project.cli(["build", "--json", "--force"]);
      expect(result.stderr).not.toContain("error:");
      expect(result.exitCode).toBe(0);
      results.push(
        (
          JSON.parse(result.stdout) as {
            images: Array<{ imageId: string; definitionHash: string }>;
          }
        ).images[0]!,
      );
    }
    expect(await readFile(path.join(projects[1]!.dir, "image.config.ts"), "utf8")).toContain(
      "\r\n",
    );
    expect(results[1]!.definitionHash).toBe(results[0]!.definitionHash);
    expect(results[1]!.imageId).toBe(results[0]!.imageId);
    expect(await docker(["run", "--rm", results[0]!.imageId, "cat", "/lines"])).toBe("one\ntwo");
  });
});
