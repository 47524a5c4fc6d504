import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  configText,
  createProject,
  skipIntegration,
  uniqueName,
  type TestProject,
} from "../helpers/cli.js";
import { docker, imageConfig, removeImages } from "../helpers/docker.js";

// Values that must reach the image byte for byte, through Dockerfile quoting and the builder's
// variable expansion.
const envValues: Record<string, string> = {
  SPACES: "  two  spaces  ",
  QUOTES: `single ' double " back \``,
  DOLLAR: "$HOME ${PATH} $(id) $",
  BACKSLASH: "a\\b\\\\c\\",
  EMPTY: "",
  UNICODE: "żółw ✓ 日本 🐢",
  SHELL: "a; b && c | d > e",
  TAB: "a\tb",
  HASH: "# not a comment",
};

const remoteDir = "/data/my dir/$HOME/'q' \"dq\" b\\s";

describe.skipIf(skipIntegration)("values reach the image byte for byte", () => {
  let project: TestProject;
  const name = uniqueName("values");
  let reference: string;

  beforeAll(async () => {
    project = await createProject();
    await project.write("files/a file.txt", "content of a file\n");
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
          .env(${JSON.stringify(envValues)})
          .workdir(${JSON.stringify(remoteDir)})
          .addLocalFile("files/a file.txt", ${JSON.stringify(`${remoteDir}/`)})
          .runCommands(${JSON.stringify("printf '%s' \"$DOLLAR\" > /from-run")})
          .entrypoint(["/bin/sh", "-c", ${JSON.stringify('printf "%s|" "$0" "$@"')}])
          .cmd(["a b", "$HOME", "", "x\\ny"]) }`,
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
    for (const [key, value] of Object.entries(envValues)) {
      expect(config.Env, key).toContain(`${key}=${value}`);
    }
  });

  it("keeps env values inside RUN", async () => {
    expect(await docker(["run", "--rm", "--entrypoint", "cat", reference, "/from-run"])).toBe(
      envValues.DOLLAR,
    );
  });

  it("keeps the working directory and copy destination", async () => {
    const config = await imageConfig(reference);
    expect(config.WorkingDir).toBe(remoteDir);
    const content = await docker([
      "run",
      "--rm",
      "--entrypoint",
      "cat",
      reference,
      `${remoteDir}/a file.txt`,
    ]);
    expect(content).toBe("content of a file");
  });

  it("keeps exec-form arguments", async () => {
    const config = await imageConfig(reference);
    expect(config.Entrypoint).toEqual(["/bin/sh", "-c", 'printf "%s|" "$0" "$@"']);
    expect(config.Cmd).toEqual(["a b", "$HOME", "", "x\ny"]);
    expect(await docker(["run", "--rm", reference])).toBe("a b|$HOME||x\ny|");
  });
});

describe.skipIf(skipIntegration)("addLocalDir", () => {
  let project: TestProject;
  const name = uniqueName("files");
  const longName = `${"long-".repeat(30)}name.txt`;
  const oddNames = [
    "with space.txt",
    "żółw.txt",
    "日本.txt",
    "-leading-dash",
    "quote'and\"double",
    "dollar$HOME",
    longName,
    `deep/${"nested-dir/".repeat(12)}file.txt`,
  ];

  beforeAll(async () => {
    project = await createProject();
    for (const file of oddNames) await project.write(`app/${file}`, `${file}\n`);
    await project.write("app/build/output.bin", "ignored");
    await project.write("app/logs/a.log", "ignored");
    await project.write("app/logs/keep.log", "kept by an exception");
    await project.write("app/secret.env", "ignored by the option");
    await project.write("app/.dockerignore", "build\nlogs/*.log\n!logs/keep.log\n");
    await fs.symlink("../outside.txt", path.join(project.dir, "app", "link-out"));
    await fs.symlink("missing-target", path.join(project.dir, "app", "dangling"));
    await project.write("outside.txt", "must not be read");
    await project.write(
      "image.config.ts",
      configText(
        `{ ${JSON.stringify(name)}: Image.fromRegistry("busybox:latest")
          .addLocalDir("app", "/srv/app", { ignore: ["*.env"] }) }`,
      ),
    );
  });

  afterAll(async () => {
    await removeImages(name);
    await project.cleanup();
  });

  it("copies what the ignore rules keep, with odd names intact", async () => {
    const result = await project.cli(["build"]);
    expect(result.stderr).not.toContain("error:");
    expect(result.exitCode).toBe(0);
    const reference = result.stdout.trim();
    const listing = await docker([
      "run",
      "--rm",
      reference,
      "find",
      "/srv/app",
      "-mindepth",
      "1",
      "!",
      "-type",
      "d",
    ]);
    const files = listing
      .split("\n")
      .map((line) => line.slice("/srv/app/".length))
      .sort();
    expect(files).toEqual(
      [".dockerignore", "dangling", "link-out", "logs/keep.log", ...oddNames].sort(),
    );
    expect(await docker(["run", "--rm", reference, "cat", `/srv/app/${longName}`])).toBe(longName);
    expect(await docker(["run", "--rm", reference, "readlink", "/srv/app/link-out"])).toBe(
      "../outside.txt",
    );
    expect(await docker(["run", "--rm", reference, "readlink", "/srv/app/dangling"])).toBe(
      "missing-target",
    );
  });

  it("rejects a missing local path before contacting the daemon", async () => {
    await project.write(
      "missing.config.ts",
      configText(`{ x: Image.fromRegistry("busybox:latest").addLocalDir("no-such-dir", "/x") }`),
    );
    const result = await project.cli(["build", "-c", "missing.config.ts"], {
      env: { DOCKER_HOST: "unix:///nonexistent/modal-image-test.sock" },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("no-such-dir");
  });
});
