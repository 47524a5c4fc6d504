import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { binPath, configText, createProject, repoRoot, type TestProject } from "../helpers/cli.js";

// Bad input must exit 2 before any daemon or registry is contacted. Pointing DOCKER_HOST and
// the registry at nothing proves it: contacting either would fail with exit 1 instead.
const unreachable = {
  DOCKER_HOST: "unix:///nonexistent/modal-image-test.sock",
  MODAL_IMAGE_REGISTRY: "127.0.0.1:9",
};

let project: TestProject;

beforeAll(async () => {
  project = await createProject();
});

afterAll(async () => {
  await project.cleanup();
});

async function expectUsageError(args: string[], config: string | undefined, pattern: RegExp) {
  if (config !== undefined) await project.write("image.config.ts", config);
  const result = await project.cli(args, { env: unreachable });
  expect(result.stderr).toMatch(pattern);
  expect(result.exitCode).toBe(2);
  expect(result.stdout).toBe("");
  expect(result.stderr).not.toContain("    at ");
}

const good = configText(`{ app: Image.fromRegistry("busybox:latest") }`);

describe("invalid input exits 2 before contacting anything", () => {
  it.each([
    ["build --publish Bad", ["build", "--publish", "Bad"], /invalid name "Bad"/],
    ["build --publish tag with colon", ["build", "--publish", "app:"], /invalid tag ""/],
    ["build --publish long tag", ["build", "--publish", `app:${"x".repeat(129)}`], /invalid tag/],
    ["build --registry", ["build", "--registry", "http://x"], /invalid --registry value/],
    ["build unknown image", ["build", "nope"], /no image "nope"/],
    ["resolve bad name", ["resolve", "App"], /invalid name "App"/],
    [
      "resolve --registry on the local index",
      ["resolve", "app", "--index", "local", "--registry", "bad!reg"],
      /invalid --registry value "bad!reg"/,
    ],
    ["resolve injection", ["resolve", "app;id"], /invalid name/],
    ["tags bad name", ["tags", "a//b"], /invalid name/],
    ["publish bad target", ["publish", "app", "a:-x"], /invalid tag "-x"/],
    ["publish bad source", ["publish", "$(id)", "app"], /invalid source/],
    ["run bad name", ["run", "APP"], /invalid name/],
    ["unknown option", ["build", "--frobnicate"], /unknown option/],
    ["unknown command", ["frobnicate"], /unknown command/],
  ])("%s", async (_case, args, pattern) => {
    await expectUsageError(args, good, pattern);
  });

  it.each([["resolve", "app"], ["names"]])(
    "rejects a bad MODAL_IMAGE_REGISTRY for %s on the local index",
    async (...args) => {
      await project.write("image.config.ts", good);
      const result = await project.cli([...args, "--index", "local"], {
        env: { ...unreachable, MODAL_IMAGE_REGISTRY: "not a registry" },
      });
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain("invalid MODAL_IMAGE_REGISTRY");
    },
  );

  it("rejects a bad MODAL_IMAGE_REGISTRY", async () => {
    await project.write("image.config.ts", good);
    const result = await project.cli(["build"], {
      env: { ...unreachable, MODAL_IMAGE_REGISTRY: "not a registry" },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("invalid MODAL_IMAGE_REGISTRY");
  });

  it.each([
    [
      "apt package with ;",
      `Image.fromRegistry("busybox:latest").aptInstall("git;id")`,
      /aptInstall\[0\].*"git;id"/,
    ],
    [
      "apt package with $()",
      `Image.fromRegistry("busybox:latest").aptInstall("$(id)")`,
      /aptInstall\[0\]/,
    ],
    [
      "pip option injection",
      `Image.fromRegistry("busybox:latest").pipInstall("--index-url=http://evil")`,
      /pipInstall\[0\]/,
    ],
    [
      "env newline",
      `Image.fromRegistry("busybox:latest").env({ A: "x\\nRUN id" })`,
      /env\.A: .*newline/,
    ],
    [
      "env name",
      `Image.fromRegistry("busybox:latest").env({ "A B": "x" })`,
      /env\.A B: invalid variable name/,
    ],
    [
      "relative remote path",
      `Image.fromRegistry("busybox:latest").addLocalFile("f", "relative")`,
      /must be absolute/,
    ],
    ["bad base", `Image.fromRegistry("Busybox")`, /fromRegistry: invalid image reference/],
    [
      "bad python",
      `Image.debianSlim({ pythonVersion: "2.7" })`,
      /unsupported Python version "2.7"/,
    ],
    ["bad fromName", `Image.fromName("Base")`, /fromName: invalid name/],
  ])("config: %s", async (_case, image, pattern) => {
    await expectUsageError(["build"], configText(`{ app: ${image} }`), pattern);
  });

  it("rejects a capitalised image name in the config", async () => {
    await expectUsageError(
      ["build"],
      configText(`{ MyApp: Image.fromRegistry("busybox:latest") }`),
      /images\.MyApp: invalid image name/,
    );
  });

  it("reports a typo in a method name with the file", async () => {
    await expectUsageError(
      ["build"],
      configText(`{ app: (Image.fromRegistry("busybox:latest") as any).aptInstal("git") }`),
      /image\.config\.ts.*aptInstal is not a function/s,
    );
  });

  it("prints the error as JSON with --json", async () => {
    await project.write("image.config.ts", good);
    const result = await project.cli(["resolve", "Bad", "--json"], { env: unreachable });
    expect(result.exitCode).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({
      error: { exitCode: 2, message: 'invalid name "Bad"' },
    });
  });
});

describe("a deleted working directory", () => {
  it.each([["resolve", "app"], ["build"], ["names"]])("exits 2 for %s", async (...args) => {
    // A shell removes its own working directory and then starts the CLI from it.
    const script = 'mkdir gone && cd gone && rmdir ../gone && exec "$0" "$@"';
    const result = await execa("sh", ["-c", script, binPath, ...args], {
      cwd: project.dir,
      env: { MODAL_IMAGE_HOME: project.home, NO_COLOR: "1" },
      reject: false,
    });

    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("error: the working directory no longer exists");
    expect(result.stderr).not.toContain("uv_cwd");
  });
});

describe("commands that touch no daemon", () => {
  it("prints the Dockerfile with the daemon unreachable", async () => {
    await project.write(
      "image.config.ts",
      configText(
        `{ app: Image.fromRegistry("busybox:latest").env({ A: "1" }).runCommands("echo hi") }`,
      ),
    );
    const result = await project.cli(["dockerfile", "app"], { env: unreachable });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('FROM busybox:latest\nENV A=1\nRUN ["/bin/sh", "-c", "echo hi"]\n');
  });

  it("prints the Modal-form example's Dockerfile", async () => {
    const result = await project.cli(
      ["dockerfile", "analytics-runtime", "-c", path.join(repoRoot, "examples", "pypi.config.ts")],
      {
        env: unreachable,
      },
    );
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(
      [
        "FROM python:3.12-slim-bookworm",
        `RUN ["/bin/sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y 'git' && rm -rf /var/lib/apt/lists/*"]`,
        "COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /.uv/uv",
        `RUN ["/bin/sh", "-c", "/.uv/uv pip install --python \\"$(command -v python)\\" --compile-bytecode 'numpy' 'pandas' 'scikit-learn'"]`,
        `RUN ["/bin/sh", "-c", "python -c 'import sklearn; print(sklearn.__version__)'"]`,
        "",
      ].join("\n"),
    );
  });

  it("fails with exit 1 and names the daemon when it is not running", async () => {
    await project.write("image.config.ts", good);
    const result = await project.cli(["build"], { env: { DOCKER_HOST: unreachable.DOCKER_HOST } });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("/nonexistent/modal-image-test.sock");
    expect(result.stderr).not.toContain("    at ");
  });

  it("prints help and the version", async () => {
    const help = await project.cli(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("build");
    const version = await project.cli(["--version"]);
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

describe("init", () => {
  it("writes a starter config that loads", async () => {
    const fresh = await createProject("modal-image-init-");
    try {
      const result = await fresh.cli(["init"]);
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(`${path.join(fresh.dir, "image.config.ts")}\n`);
      const dockerfile = await fresh.cli(["dockerfile", "app"], { env: unreachable });
      expect(dockerfile.exitCode).toBe(0);
      expect(dockerfile.stdout.split("\n")[0]).toBe("FROM debian:bookworm-slim");
    } finally {
      await fresh.cleanup();
    }
  });

  it("keeps an existing config and exits 2", async () => {
    const fresh = await createProject("modal-image-init-");
    try {
      const original = await fresh.write("image.config.json", '{"images": {}}');
      const result = await fresh.cli(["init"]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(original);
      expect(await readFile(original, "utf8")).toBe('{"images": {}}');
      await expect(readFile(path.join(fresh.dir, "image.config.ts"), "utf8")).rejects.toThrow();
    } finally {
      await fresh.cleanup();
    }
  });

  it("keeps a package.json config and exits 2, also with --force", async () => {
    const fresh = await createProject("modal-image-init-");
    try {
      const manifest = JSON.stringify({ name: "x", "modal-image": { images: {} } });
      await fresh.write("package.json", manifest);
      for (const args of [["init"], ["init", "--force"]]) {
        const result = await fresh.cli(args);
        expect(result.exitCode).toBe(2);
        expect(result.stderr).toContain(path.join(fresh.dir, "package.json"));
      }
      await expect(readFile(path.join(fresh.dir, "image.config.ts"), "utf8")).rejects.toThrow();
    } finally {
      await fresh.cleanup();
    }
  });

  it("writes a config beside a package.json without the key", async () => {
    const fresh = await createProject("modal-image-init-");
    try {
      await fresh.write("package.json", JSON.stringify({ name: "x" }));
      expect((await fresh.cli(["init"])).exitCode).toBe(0);
    } finally {
      await fresh.cleanup();
    }
  });

  it("replaces image.config.ts only with --force", async () => {
    const fresh = await createProject("modal-image-init-");
    try {
      await fresh.write("image.config.ts", "old");
      expect((await fresh.cli(["init"])).exitCode).toBe(2);
      expect(await readFile(path.join(fresh.dir, "image.config.ts"), "utf8")).toBe("old");
      expect((await fresh.cli(["init", "--force"])).exitCode).toBe(0);
      expect(await readFile(path.join(fresh.dir, "image.config.ts"), "utf8")).toContain(
        "defineConfig",
      );
    } finally {
      await fresh.cleanup();
    }
  });
});
