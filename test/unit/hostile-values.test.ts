import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { generateDockerfile } from "../../src/dockerfile/generate.js";
import { UsageError } from "../../src/errors.js";
import { Image } from "../../src/image/image.js";
import { validateImage } from "../../src/image/validate.js";
import { hostileKeys, hostileValues, type HostileKey } from "../helpers/hostile-values.js";

const baseDir = "/project";
const base = Image.fromRegistry("busybox:latest");

/** Keys accepted by a method that checks only that text fits on one Dockerfile line. */
const oneLineText: readonly HostileKey[] = hostileKeys.filter(
  (key) => !["newline", "carriageReturn", "crlf", "nul", "empty"].includes(key),
);
/** Keys accepted where the value is written into the Dockerfile, which caps a line's length. */
const oneLineWritten = oneLineText.filter((key) => key !== "overLineLimit");
/** Keys accepted as paths in the image, whose file names are at most 255 bytes long. */
const oneLinePath = oneLineWritten.filter((key) => key !== "long");
/** Keys accepted by exec-form arguments: everything but NUL, empty and over-long text. */
const execForm = hostileKeys.filter((key) => !["nul", "overLineLimit"].includes(key));

interface MethodCase {
  method: string;
  apply: (value: string) => Image;
  accepted: readonly HostileKey[];
}

// Every value position of every Image method. Paths are read from disk only when built, so
// here any one-line path is accepted; the file system rejects the over-long name later.
const methodCases: readonly MethodCase[] = [
  { method: "fromRegistry", apply: (value) => Image.fromRegistry(value), accepted: [] },
  { method: "fromName", apply: (value) => Image.fromName(value), accepted: [] },
  {
    method: "debianSlim pythonVersion",
    apply: (value) => Image.debianSlim({ pythonVersion: value }),
    accepted: [],
  },
  {
    method: "fromDockerfile",
    apply: (value) => Image.fromDockerfile(value),
    accepted: oneLineText,
  },
  {
    method: "fromDockerfile contextDir",
    apply: (value) => Image.fromDockerfile("Dockerfile", { contextDir: value }),
    accepted: oneLineText,
  },
  { method: "aptInstall", apply: (value) => base.aptInstall(value), accepted: ["long"] },
  {
    method: "pipInstall",
    apply: (value) => base.pipInstall(value),
    accepted: ["semicolon", "and", "pipe", "singleQuote", "doubleQuote", "backslash", "long"],
  },
  {
    method: "pipInstall indexUrl",
    apply: (value) => base.pipInstall("x", { indexUrl: value }),
    accepted: oneLineWritten,
  },
  {
    method: "pipInstall extraIndexUrl",
    apply: (value) => base.pipInstall("x", { extraIndexUrl: [value] }),
    accepted: oneLineWritten,
  },
  {
    method: "pipInstall findLinks",
    apply: (value) => base.pipInstall("x", { findLinks: value }),
    accepted: oneLineWritten,
  },
  {
    method: "uvPipInstall",
    apply: (value) => base.uvPipInstall(value),
    accepted: ["semicolon", "and", "pipe", "singleQuote", "doubleQuote", "backslash", "long"],
  },
  {
    method: "uvPipInstall uvVersion",
    apply: (value) => base.uvPipInstall("x", { uvVersion: value }),
    accepted: [],
  },
  {
    method: "pipInstallFromRequirements",
    apply: (value) => base.pipInstallFromRequirements(value),
    accepted: oneLineText,
  },
  {
    method: "pipInstallFromRequirements indexUrl",
    apply: (value) => base.pipInstallFromRequirements("r.txt", { indexUrl: value }),
    accepted: oneLineWritten,
  },
  {
    method: "runCommands",
    apply: (value) => base.runCommands(value),
    accepted: execForm.filter((key) => key !== "empty"),
  },
  // Raw Dockerfile text: line breaks are its point, and only LF and CRLF line ends are taken.
  {
    method: "dockerfileCommands",
    apply: (value) => base.dockerfileCommands(value),
    accepted: execForm.filter((key) => key !== "empty" && key !== "carriageReturn"),
  },
  {
    method: "env value",
    apply: (value) => base.env({ KEY: value }),
    accepted: [...oneLineWritten, "empty"],
  },
  { method: "env name", apply: (value) => base.env({ [value]: "v" }), accepted: ["long"] },
  { method: "workdir", apply: (value) => base.workdir(value), accepted: oneLinePath },
  { method: "entrypoint", apply: (value) => base.entrypoint([value]), accepted: execForm },
  { method: "cmd", apply: (value) => base.cmd([value]), accepted: execForm },
  {
    method: "addLocalFile localPath",
    apply: (value) => base.addLocalFile(value, "/dst"),
    accepted: oneLineText,
  },
  {
    method: "addLocalFile remotePath",
    apply: (value) => base.addLocalFile("f", `/${value}`),
    accepted: [...oneLinePath, "empty"],
  },
  {
    method: "addLocalDir localPath",
    apply: (value) => base.addLocalDir(value, "/dst"),
    accepted: oneLineText,
  },
  {
    method: "addLocalDir remotePath",
    apply: (value) => base.addLocalDir("d", `/${value}`),
    accepted: [...oneLinePath, "empty"],
  },
  {
    method: "addLocalDir ignore",
    apply: (value) => base.addLocalDir("d", "/dst", { ignore: [value] }),
    accepted: oneLineText,
  },
];

const pinned = `127.0.0.1:5000/base@sha256:${"a".repeat(64)}`;

function generate(image: Image): string {
  return generateDockerfile({
    image,
    baseReference: pinned,
    baseDockerfileText: "FROM busybox:latest",
    resolveLocalPath: (localPath) => path.resolve(baseDir, localPath),
  }).text;
}

/** Returns the Dockerfile, or undefined when validation or generation rejects the image. */
function accept(image: Image): string | undefined {
  if (validateImage(image, { baseDir }).length > 0) return undefined;
  try {
    return generate(image);
  } catch (error) {
    if (error instanceof UsageError) return undefined;
    throw error;
  }
}

describe("hostile values in Image methods", () => {
  it.each(methodCases)("$method accepts only its values", ({ apply, accepted }) => {
    const taken = hostileKeys.filter((key) => accept(apply(hostileValues[key])) !== undefined);
    expect(taken).toEqual(accepted);
  });

  // Only dockerfileCommands writes text as Dockerfile lines. Everything else stays on one line.
  it.each(methodCases.filter(({ method }) => method !== "dockerfileCommands"))(
    "$method keeps the Dockerfile's lines",
    ({ apply, accepted }) => {
      const lineCount = generate(apply("plain")).split("\n").length;
      for (const key of accepted) {
        expect(generate(apply(hostileValues[key])).split("\n"), key).toHaveLength(lineCount);
      }
    },
  );

  it.each(["runCommands", "entrypoint", "cmd"])("%s keeps exec-form text", (method) => {
    const methodCase = methodCases.find((item) => item.method === method)!;
    for (const key of methodCase.accepted) {
      const value = hostileValues[key];
      const line = generate(methodCase.apply(value)).split("\n")[1]!;
      const args = JSON.parse(line.slice(line.indexOf("["))) as string[];
      expect(args.at(-1), key).toBe(value);
    }
  });

  it("dockerfileCommands writes CRLF as LF", () => {
    expect(generate(base.dockerfileCommands(hostileValues.crlf))).toBe(
      "FROM busybox:latest\na\nRUN touch /pwned\n",
    );
  });

  it("dockerfileCommands names a lone CR", () => {
    const [problem] = validateImage(base.dockerfileCommands("RUN a\rb"));
    expect(problem?.path).toBe("dockerfileCommands[0]");
    expect(problem?.message).toContain("carriage return");
  });

  // The RUN script goes to /bin/sh -c. A stub for `python` prints the words pip would get.
  it("pipInstall words reach the shell byte for byte", () => {
    const accepted = methodCases.find((item) => item.method === "pipInstall")!.accepted;
    const values = accepted.map((key) => hostileValues[key]);
    const line = generate(base.pipInstall(...values)).split("\n")[1]!;
    const script = (JSON.parse(line.slice(line.indexOf("["))) as string[])[2]!;
    const stub = `python() { shift 4; printf '%s\\0' "$@"; }\n`;
    const words = execFileSync("/bin/sh", ["-c", stub + script], { encoding: "utf8" });
    expect(words.split("\0").slice(0, -1)).toEqual([...values].sort());
  });
});

describe("local paths stay inside the config directory", () => {
  it.each([
    ["../outside.txt", "addLocalFile.localPath"],
    ["sub/../../outside.txt", "addLocalFile.localPath"],
    ["/etc/passwd", "addLocalFile.localPath"],
    ["..", "addLocalFile.localPath"],
  ])("rejects %j", (localPath, problemPath) => {
    const problems = validateImage(base.addLocalFile(localPath, "/dst"), { baseDir });
    expect(problems.map((problem) => problem.path)).toEqual([problemPath]);
    expect(problems[0]?.message).toContain(JSON.stringify(localPath));
    expect(problems[0]?.message).toContain("leads outside /project");
  });

  it.each(["sub/../inside.txt", "/project/inside.txt", "./inside.txt", "..inside"])(
    "accepts %j",
    (localPath) => {
      expect(validateImage(base.addLocalFile(localPath, "/dst"), { baseDir })).toEqual([]);
    },
  );

  it("checks every method that reads a local path", () => {
    const image = Image.fromDockerfile("../Dockerfile", { contextDir: "../ctx" })
      .pipInstallFromRequirements("../r.txt")
      .addLocalDir("../d", "/d");
    expect(validateImage(image, { baseDir }).map((problem) => problem.path)).toEqual([
      "fromDockerfile",
      "fromDockerfile.contextDir",
      "pipInstallFromRequirements",
      "addLocalDir.localPath",
    ]);
  });
});
