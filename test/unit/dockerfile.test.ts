import path from "node:path";
import { describe, expect, it } from "vitest";
import { generateDockerfile } from "../../src/dockerfile/generate.js";
import { quoteWord } from "../../src/dockerfile/quote.js";
import { Image } from "../../src/image/image.js";

const base = Image.fromRegistry("debian:bookworm-slim");

function generate(
  image: Image,
  extra: { baseReference?: string; baseDockerfileText?: string } = {},
) {
  return generateDockerfile({
    image,
    ...extra,
    resolveLocalPath: (p) => path.resolve("/project", p),
  });
}

function body(image: Image): string[] {
  return generate(image).text.trimEnd().split("\n").slice(1);
}

describe("generateDockerfile bases", () => {
  it.each([
    [Image.debianSlim(), "FROM python:3.12-slim-bookworm"],
    [Image.debianSlim({ pythonVersion: "3.11" }), "FROM python:3.11-slim-bookworm"],
    [
      Image.fromRegistry("127.0.0.1:5000/x@sha256:" + "b".repeat(64)),
      "FROM 127.0.0.1:5000/x@sha256:" + "b".repeat(64),
    ],
    [Image.fromScratch(), "FROM scratch"],
  ])("%#: %s", (image, expected) => {
    expect(generate(image).text).toBe(`${expected}\n`);
  });

  it("pins fromName to the resolved reference", () => {
    const pinned = `127.0.0.1:5000/base@sha256:${"c".repeat(64)}`;
    expect(generate(Image.fromName("base:v1"), { baseReference: pinned }).text).toBe(
      `FROM ${pinned}\n`,
    );
  });

  it("appends steps to a fromDockerfile text", () => {
    const text = "FROM busybox AS build\r\nRUN true\r\nFROM busybox\r\n\r\n";
    const image = Image.fromDockerfile("Dockerfile").env({ A: "1" });
    expect(generate(image, { baseDockerfileText: text }).text).toBe(
      "FROM busybox AS build\nRUN true\nFROM busybox\nENV A=1\n",
    );
  });

  it("uses the escape directive of a fromDockerfile text", () => {
    const image = Image.fromDockerfile("Dockerfile").env({ A: 'x$"`' });
    expect(generate(image, { baseDockerfileText: "# escape=`\nFROM busybox\n" }).text).toBe(
      '# escape=`\nFROM busybox\nENV A="x`$`"``"\n',
    );
  });
});

describe("generateDockerfile steps", () => {
  it.each<[string, Image, string[]]>([
    [
      "aptInstall keeps order and quotes",
      base.aptInstall("python3", "git"),
      [
        `RUN ["/bin/sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y 'python3' 'git' && rm -rf /var/lib/apt/lists/*"]`,
      ],
    ],
    [
      "pipInstall sorts packages",
      base.pipInstall("pandas>=2", ["numpy"], "Django[argon2]==5.0"),
      [
        `RUN ["/bin/sh", "-c", "python -m pip install --no-cache-dir 'Django[argon2]==5.0' 'numpy' 'pandas>=2'"]`,
      ],
    ],
    [
      "pipInstall options",
      base.pipInstall("a", {
        indexUrl: "https://i/simple",
        extraIndexUrl: ["https://x"],
        findLinks: "/w",
        pre: true,
      }),
      [
        `RUN ["/bin/sh", "-c", "python -m pip install --no-cache-dir --index-url 'https://i/simple' --extra-index-url 'https://x' --find-links '/w' --pre 'a'"]`,
      ],
    ],
    [
      "runCommands one layer each",
      base.runCommands("echo 1", ["echo 2"]),
      [`RUN ["/bin/sh", "-c", "echo 1"]`, `RUN ["/bin/sh", "-c", "echo 2"]`],
    ],
    [
      "runCommands keeps newlines and quotes inside JSON",
      base.runCommands('echo "a"\nFROM evil\t\\'),
      [`RUN ["/bin/sh", "-c", "echo \\"a\\"\\nFROM evil\\t\\\\"]`],
    ],
    [
      "dockerfileCommands verbatim",
      base.dockerfileCommands("LABEL a=b", "USER nobody\n"),
      ["LABEL a=b", "USER nobody"],
    ],
    [
      "env quotes only where needed",
      base.env({
        PLAIN: "/usr/bin:x",
        EMPTY: "",
        SPACE: "a b",
        DOLLAR: "$HOME",
        QUOTE: 'say "hi"',
        SLASH: "a\\b",
        UNI: "żółw ✓",
      }),
      [
        `ENV PLAIN=/usr/bin:x EMPTY="" SPACE="a b" DOLLAR="\\$HOME" QUOTE="say \\"hi\\"" SLASH="a\\\\b" UNI="żółw ✓"`,
      ],
    ],
    ["workdir", base.workdir("/srv/my app"), [`WORKDIR "/srv/my app"`]],
    ["workdir with dollar", base.workdir("/$x"), [`WORKDIR "/\\$x"`]],
    [
      "entrypoint exec form",
      base.entrypoint(["python3", "-m", "app"]),
      [`ENTRYPOINT ["python3", "-m", "app"]`],
    ],
    [
      "cmd escapes JSON",
      base.cmd(["sh", "-c", 'echo "$HOME"\n']),
      [`CMD ["sh", "-c", "echo \\"$HOME\\"\\n"]`],
    ],
    ["cmd empty", base.cmd([]), ["CMD []"]],
    [
      "addLocalFile to a path",
      base.addLocalFile("conf/app.toml", "/etc/app.toml"),
      [`COPY [".modal-image/ctx/0/file", "/etc/app.toml"]`],
    ],
    [
      "addLocalFile into a directory keeps the name",
      base.addLocalFile("conf/my file.toml", "/etc/app/"),
      [`COPY [".modal-image/ctx/0/file", "\\"/etc/app/my file.toml\\""]`],
    ],
    [
      "addLocalDir",
      base.env({ A: "1" }).addLocalDir("src", "/app"),
      ["ENV A=1", `COPY [".modal-image/ctx/1/", "/app"]`],
    ],
    [
      "pipInstallFromRequirements",
      base.pipInstallFromRequirements("requirements.txt"),
      [
        `COPY [".modal-image/ctx/0/file", "/.modal-image/requirements-0.txt"]`,
        `RUN ["/bin/sh", "-c", "python -m pip install --no-cache-dir -r '/.modal-image/requirements-0.txt'"]`,
      ],
    ],
  ])("%s", (_name, image, expected) => {
    expect(body(image)).toEqual(expected);
  });

  it("uvPipInstall in Modal's form", () => {
    const image = Image.debianSlim({ pythonVersion: "3.12" })
      .aptInstall("git")
      .uvPipInstall("scikit-learn", "numpy", "pandas")
      .runCommands("python -c 'import sklearn'");
    expect(generate(image).text).toBe(
      [
        "FROM python:3.12-slim-bookworm",
        `RUN ["/bin/sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y 'git' && rm -rf /var/lib/apt/lists/*"]`,
        "COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /.uv/uv",
        `RUN ["/bin/sh", "-c", "/.uv/uv pip install --python \\"$(command -v python)\\" --compile-bytecode 'numpy' 'pandas' 'scikit-learn'"]`,
        `RUN ["/bin/sh", "-c", "python -c 'import sklearn'"]`,
        "",
      ].join("\n"),
    );
  });

  it("lists context sources with absolute paths", () => {
    const image = base
      .addLocalFile("a.txt", "/a")
      .addLocalDir("/abs/dir", "/d", { ignore: ["*.log"] });
    expect(generate(image).sources).toEqual([
      { prefix: ".modal-image/ctx/0", localPath: "/project/a.txt", kind: "file" },
      { prefix: ".modal-image/ctx/1", localPath: "/abs/dir", kind: "dir", ignore: ["*.log"] },
    ]);
  });

  it("hoists a syntax directive from dockerfileCommands", () => {
    const image = base.dockerfileCommands("# syntax=docker/dockerfile:1\nRUN true");
    expect(generate(image).text).toBe(
      "# syntax=docker/dockerfile:1\nFROM debian:bookworm-slim\nRUN true\n",
    );
  });

  it("writes no syntax line by default", () => {
    expect(generate(base.runCommands("true")).text).not.toMatch(/syntax/);
  });

  it("gives byte-identical text for the same definition", () => {
    const make = () =>
      base.aptInstall("git").pipInstall("b", "a").env({ X: "1" }).addLocalDir("d", "/d");
    expect(generate(make()).text).toBe(generate(make()).text);
    expect(generate(make()).text).not.toMatch(/\r/);
  });
});

describe("quoteWord", () => {
  it.each([
    ["plain", "plain"],
    ["a b", '"a b"'],
    ["$(id)", '"\\$(id)"'],
    ["`id`", '"`id`"'],
    ["a;b&&c|d", '"a;b&&c|d"'],
    ["it's", `"it's"`],
    ["\\", '"\\\\"'],
    ["-rf", "-rf"],
  ])("%j becomes %s", (input, expected) => {
    expect(quoteWord(input)).toBe(expected);
  });
});

describe("generateDockerfile limits", () => {
  it("rejects a line over the daemon's limit", () => {
    const image = base.runCommands("ok", `echo ${"x".repeat(70_000)}`);
    expect(() => generate(image)).toThrow(
      /step 1 \(runCommands\) makes a Dockerfile line of \d+ bytes/,
    );
  });

  it("accepts a line at the limit", () => {
    const prefix = 'RUN ["/bin/sh", "-c", "';
    const command = "x".repeat(65_535 - prefix.length - 2);
    expect(generate(base.runCommands(command)).text.split("\n")[1]).toHaveLength(65_535);
  });
});
