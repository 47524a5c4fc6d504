import { describe, expect, it } from "vitest";
import { Image } from "../../src/image/image.js";
import { validateImage } from "../../src/image/validate.js";

const base = Image.fromRegistry("debian:bookworm-slim");
const hostile = [
  "a;b",
  "a && b",
  "a|b",
  "$(id)",
  "`id`",
  "a'b",
  'a"b',
  "a\\b",
  "a\nb",
  "a\rb",
  "a\u0000b",
  "-rf",
  "",
  "ż",
];

function paths(image: Image): string[] {
  return validateImage(image).map((problem) => problem.path);
}

describe("validateImage", () => {
  it("accepts a well-formed definition", () => {
    const image = Image.debianSlim({ pythonVersion: "3.12.7" })
      .aptInstall(
        "python3-sklearn",
        "libc6:amd64",
        "git=1:2.39.5-0+deb12u1",
        "curl/bookworm-backports",
      )
      .pipInstall("pandas>=2,<3", "pkg @ https://host/pkg.whl", "x[extra]; python_version>'3'")
      .runCommands("echo 'multi\nline'")
      .env({ EMPTY: "", TAB: "a\tb", UNI: "✓" })
      .workdir("/app dir")
      .cmd(["", "x\ny"])
      .addLocalDir("src", "/app/src", { ignore: ["*.log"] });
    expect(validateImage(image)).toEqual([]);
  });

  it.each(hostile.filter((value) => value !== "ż"))("rejects apt package %j", (value) => {
    expect(paths(base.aptInstall("git", value))).toEqual(["aptInstall[1]"]);
  });

  it.each(["Git", "g", "python3 git", "--allow-unauthenticated"])(
    "rejects apt package %j",
    (value) => {
      expect(paths(base.aptInstall(value))).toEqual(["aptInstall[0]"]);
    },
  );

  it.each(["-e .", "--index-url=x", "", "a\nb", "a\u0000", ".", "./pkg"])(
    "rejects pip requirement %j",
    (value) => {
      expect(paths(base.pipInstall(value))).toEqual(["pipInstall[0]"]);
    },
  );

  it("numbers repeated methods", () => {
    expect(paths(base.aptInstall("git").aptInstall("ok", "BAD"))).toEqual(["aptInstall#2[1]"]);
  });

  it.each(["a\nb", "a\rb", "a\u0000b", "a\u001bb", "\ud800"])("rejects env value %j", (value) => {
    expect(paths(base.env({ KEY: value }))).toEqual(["env.KEY"]);
  });

  it.each(["1A", "A-B", "A B", "", "A=B", "$A"])("rejects env name %j", (key) => {
    expect(paths(base.env({ [key]: "v" }))).toEqual([`env.${key}`]);
  });

  it.each(["a;b", "$(id)", "`id`", 'a"b', "a\\b", "ż", "-x"])("accepts env value %j", (value) => {
    expect(paths(base.env({ KEY: value }))).toEqual([]);
  });

  it.each(["relative/path", "", "/a\nb", "/a\u0000"])("rejects remote path %j", (value) => {
    expect(paths(base.addLocalFile("f", value))).toEqual(["addLocalFile.remotePath"]);
  });

  it.each(["2.7", "3.8", "3.15", "3", "latest", "3.12;id"])(
    "rejects Python version %j",
    (version) => {
      expect(paths(Image.debianSlim({ pythonVersion: version }))).toEqual([
        "debianSlim.pythonVersion",
      ]);
    },
  );

  it.each(["Debian", "debian:bad tag", "debian\nRUN id", ""])(
    "rejects registry reference %j",
    (reference) => {
      expect(paths(Image.fromRegistry(reference))).toEqual(["fromRegistry"]);
    },
  );

  it.each(["Base", "base:", "base:bad tag", "base;id"])("rejects fromName %j", (name) => {
    expect(paths(Image.fromName(name))).toEqual(["fromName"]);
  });

  it("rejects empty lists and a NUL in a command", () => {
    expect(paths(base.aptInstall().runCommands("ok", "a\u0000b"))).toEqual([
      "aptInstall",
      "runCommands[1]",
    ]);
  });

  it("reports every problem at once", () => {
    const image = base.aptInstall("BAD").env({ K: "a\nb" }).workdir("").cmd(["a\u0000"]);
    expect(paths(image)).toEqual(["aptInstall[0]", "env.K", "workdir", "cmd[0]"]);
  });

  it("names the value and the fix", () => {
    const [problem] = validateImage(base.aptInstall("python3;rm -rf /"));
    expect(problem?.message).toContain('"python3;rm -rf /"');
    expect(problem?.message).toContain("python3-numpy");
  });
});

describe("Image", () => {
  it("is immutable", () => {
    const first = base.aptInstall("git");
    const second = first.env({ A: "1" });
    expect(first.steps).toHaveLength(1);
    expect(second.steps).toHaveLength(2);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it("copies objects it is given", () => {
    const vars: Record<string, string> = { A: "1" };
    const image = base.env(vars);
    vars.A = "2";
    expect(image.steps[0]).toEqual({ kind: "env", vars: { A: "1" } });
  });
});
