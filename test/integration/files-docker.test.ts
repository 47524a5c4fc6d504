import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { binPath, configText, createProject, skipIntegration, uniqueName } from "../helpers/cli.js";
import { docker, removeImages } from "../helpers/docker.js";

/**
 * Files of one case, relative to the project directory, which contains the config. Paths that
 * start with `../` land next to the project, outside the config directory.
 */
interface Tree {
  files?: Readonly<Record<string, string>>;
  /** Symlink path to target, as stored on disk. */
  symlinks?: Readonly<Record<string, string>>;
  modes?: Readonly<Record<string, number>>;
}

interface FileCase {
  name: string;
  tree: Tree;
  /** The image expression after `Image.fromRegistry("busybox:latest")`, or a whole one. */
  image: string;
  /** Directory given to `docker build`; its Dockerfile does the same copy. */
  dockerContext: string;
  /** What modal-image must do: build the same /out tree as docker, or reject the config. */
  expected: { same: true } | { rejected: RegExp; dockerFails: boolean };
}

const longName = `${"long-name-".repeat(14)}.txt`;
const deepPath = `${"d".repeat(90)}/${"e".repeat(90)}/${"f".repeat(90)}/deep.txt`;
const copyAll = "FROM busybox:latest\nCOPY . /out/\n";
const fromBusybox = 'Image.fromRegistry("busybox:latest")';

const cases: readonly FileCase[] = [
  {
    name: "names with spaces, unicode and over 100 bytes",
    tree: {
      files: {
        "app/Dockerfile": copyAll,
        "app/with space.txt": "a",
        "app/żółw ✓.txt": "b",
        "app/日本/🐢 x.txt": "c",
        "app/e\u0301.txt": "nfd",
        [`app/${longName}`]: "long",
        [`app/${deepPath}`]: "deep",
      },
    },
    image: `${fromBusybox}.addLocalDir("app", "/out")`,
    dockerContext: "app",
    expected: { same: true },
  },
  {
    name: "single files with odd names keep their names",
    tree: {
      files: {
        Dockerfile: `FROM busybox:latest\nCOPY ["with space.txt", "żółw ✓.txt", "${longName}", "/out/"]\n`,
        "with space.txt": "a",
        "żółw ✓.txt": "b",
        [longName]: "long",
      },
    },
    image: `${fromBusybox}.addLocalFile("with space.txt", "/out/").addLocalFile("żółw ✓.txt", "/out/").addLocalFile(${JSON.stringify(longName)}, "/out/")`,
    dockerContext: ".",
    expected: { same: true },
  },
  {
    name: ".. that stays inside the directory",
    tree: {
      files: {
        Dockerfile: "FROM busybox:latest\nCOPY sub/../a.txt /out/a.txt\n",
        "a.txt": "a",
        "sub/b.txt": "b",
      },
    },
    image: `${fromBusybox}.addLocalFile("sub/../a.txt", "/out/a.txt")`,
    dockerContext: ".",
    expected: { same: true },
  },
  {
    name: ".. that leads outside",
    tree: {
      files: {
        Dockerfile: "FROM busybox:latest\nCOPY ../outside.txt /out/f\n",
        "../outside.txt": "secret",
      },
    },
    image: `${fromBusybox}.addLocalFile("../outside.txt", "/out/f")`,
    dockerContext: ".",
    expected: {
      rejected: /"\.\.\/outside\.txt" leads outside .*config file's directory/,
      dockerFails: true,
    },
  },
  {
    name: "symlinks inside a directory stay links",
    tree: {
      files: { "app/Dockerfile": copyAll, "app/a.txt": "a", "../outside.txt": "secret" },
      symlinks: {
        "app/outside": "../../outside.txt",
        "app/absolute": "/etc/passwd",
        "app/dangling": "does/not/exist",
        "app/sibling": "a.txt",
      },
    },
    image: `${fromBusybox}.addLocalDir("app", "/out")`,
    dockerContext: "app",
    expected: { same: true },
  },
  // Docker resolves a link in a COPY source inside the context root, so `link` -> ../outside
  // becomes <context>/outside, which does not exist.
  {
    name: "intermediate symlink pointing outside",
    tree: {
      files: {
        Dockerfile: "FROM busybox:latest\nCOPY link/file.txt /out/f\n",
        "../outside/file.txt": "secret",
      },
      symlinks: { link: "../outside" },
    },
    image: `${fromBusybox}.addLocalFile("link/file.txt", "/out/f")`,
    dockerContext: ".",
    expected: {
      rejected: /link\/file\.txt goes through the symbolic link .*\/link\n/,
      dockerFails: true,
    },
  },
  // Docker follows a link that stays inside the context. modal-image rejects every link in a
  // local path, so that the rule does not depend on where a link points.
  {
    name: "intermediate symlink pointing inside",
    tree: {
      files: {
        Dockerfile: "FROM busybox:latest\nCOPY link/file.txt /out/f\n",
        "real/file.txt": "inside",
      },
      symlinks: { link: "real" },
    },
    image: `${fromBusybox}.addLocalFile("link/file.txt", "/out/f")`,
    dockerContext: ".",
    expected: { rejected: /goes through the symbolic link .*\/link\n/, dockerFails: false },
  },
  {
    name: "dangling symlink named as the file",
    tree: {
      files: { Dockerfile: "FROM busybox:latest\nCOPY dangling /out/f\n" },
      symlinks: { dangling: "does/not/exist" },
    },
    image: `${fromBusybox}.addLocalFile("dangling", "/out/f")`,
    dockerContext: ".",
    expected: { rejected: /goes through the symbolic link .*\/dangling\n/, dockerFails: true },
  },
  {
    name: "missing file",
    tree: { files: { Dockerfile: "FROM busybox:latest\nCOPY missing.txt /out/f\n" } },
    image: `${fromBusybox}.addLocalFile("missing.txt", "/out/f")`,
    dockerContext: ".",
    expected: { rejected: /local path not found: .*\/missing\.txt\n/, dockerFails: true },
  },
  {
    name: ".dockerignore excluding everything but a few paths",
    tree: {
      files: {
        "app/Dockerfile": copyAll,
        "app/.dockerignore": "*\n!README.md\n!src\nsrc/**/*.tmp\n!src/keep.tmp\n",
        "app/README.md": "r",
        "app/LICENSE": "l",
        "app/src/a.ts": "a",
        "app/src/a.tmp": "t",
        "app/src/keep.tmp": "k",
        "app/src/lib/b.tmp": "t",
        "app/src/lib/b.ts": "b",
        "app/docs/x.md": "x",
      },
    },
    image: `${fromBusybox}.addLocalDir("app", "/out")`,
    dockerContext: "app",
    expected: { same: true },
  },
  // Named paths, because `COPY . /out/` would also copy modal-image's .modal-image/Dockerfile.
  {
    name: "fromDockerfile with a .dockerignore that negates a few paths",
    tree: {
      files: {
        "ctx/Dockerfile": "FROM busybox:latest\nCOPY keep /out/\nCOPY src /out/src/\n",
        "ctx/.dockerignore": "*\n!keep\n!src/keep\n",
        "ctx/keep": "k",
        "ctx/other": "o",
        "ctx/src/keep": "k",
        "ctx/src/other": "o",
      },
    },
    image: 'Image.fromDockerfile("ctx/Dockerfile")',
    dockerContext: "ctx",
    expected: { same: true },
  },
  // The daemon reports the file as excluded, for modal-image as for docker.
  {
    name: "fromDockerfile naming a file .dockerignore excludes",
    tree: {
      files: {
        "ctx/Dockerfile": "FROM busybox:latest\nCOPY secret.txt /out/\n",
        "ctx/.dockerignore": "secret.txt\n",
        "ctx/secret.txt": "s",
      },
    },
    image: 'Image.fromDockerfile("ctx/Dockerfile")',
    dockerContext: "ctx",
    expected: { rejected: /secret\.txt.*excluded by \.dockerignore/s, dockerFails: true },
  },
  {
    name: "fromDockerfile contextDir through a symlink",
    tree: {
      files: { "real/Dockerfile": copyAll, "real/a.txt": "a" },
      symlinks: { ctx: "real" },
    },
    image: 'Image.fromDockerfile("real/Dockerfile", { contextDir: "ctx" })',
    dockerContext: "ctx",
    expected: { rejected: /goes through the symbolic link .*\/ctx\n/, dockerFails: false },
  },
];

// Lists /out as lines of type, path, mode and sha256 or link target; /out itself is left out.
const listScript = [
  "cd /out && find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do",
  '  if [ -L "$p" ]; then echo "link $p -> $(readlink "$p")";',
  '  elif [ -d "$p" ]; then echo "dir $p $(stat -c %a "$p")";',
  '  else set -- $(sha256sum < "$p"); echo "file $p $(stat -c %a "$p") $1"; fi',
  "done",
].join("\n");

async function listOut(reference: string): Promise<string[]> {
  const listing = await docker(["run", "--rm", reference, "sh", "-c", listScript]);
  return listing.split("\n");
}

async function writeTree(dir: string, tree: Tree): Promise<void> {
  for (const [file, content] of Object.entries(tree.files ?? {})) {
    await fs.mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await fs.writeFile(path.join(dir, file), content);
  }
  for (const [link, target] of Object.entries(tree.symlinks ?? {})) {
    await fs.mkdir(path.dirname(path.join(dir, link)), { recursive: true });
    await fs.symlink(target, path.join(dir, link));
  }
  for (const [file, mode] of Object.entries(tree.modes ?? {})) {
    await fs.chmod(path.join(dir, file), mode);
  }
}

/** Builds with the classic builder, as modal-image's context reaches the daemon. */
function dockerBuild(context: string, tag: string) {
  return execa("docker", ["build", "--quiet", "--force-rm", "--tag", tag, context], {
    env: { DOCKER_BUILDKIT: "0" },
    reject: false,
  });
}

const unreachable = { DOCKER_HOST: "unix:///nonexistent/modal-image-test.sock" };

describe.skipIf(skipIntegration)("local files against docker build", () => {
  // Each case gets its own project inside `root`, so `../` paths stay inside `root`.
  let root: string;
  const dockerTags: string[] = [];
  const names: string[] = [];

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join((await createProject()).dir, "cases-"));
  });

  afterAll(async () => {
    await removeImages(...names, ...dockerTags);
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  });

  it.each(cases)("$name", async ({ tree, image, dockerContext, expected }) => {
    const caseDir = await fs.mkdtemp(path.join(root, "case-"));
    const project = path.join(caseDir, "project");
    await fs.mkdir(project);
    await writeTree(project, tree);
    const key = uniqueName("files");
    names.push(key);
    const configFile = path.join(project, "image.config.ts");
    await fs.writeFile(configFile, configText(`{ ${JSON.stringify(key)}: ${image} }`));

    const tag = `modal-image-test/files-docker-${randomBytes(6).toString("hex")}`;
    dockerTags.push(tag);
    const dockerResult = await dockerBuild(path.join(project, dockerContext), tag);

    const home = path.join(caseDir, "home");
    const run = (env: Record<string, string>) =>
      execa(binPath, ["build", "-c", configFile], {
        cwd: project,
        env: { MODAL_IMAGE_HOME: home, NO_COLOR: "1", ...env },
        reject: false,
        stdin: "ignore",
      });

    if ("same" in expected) {
      expect(dockerResult.exitCode, dockerResult.stderr).toBe(0);
      const ours = await run({});
      expect(ours.stderr).not.toContain("error:");
      expect(ours.exitCode).toBe(0);
      const docker = await listOut(tag);
      expect(docker.length).toBeGreaterThan(0);
      expect(await listOut(ours.stdout.trim())).toEqual(docker);
      return;
    }

    expect(dockerResult.exitCode !== 0, dockerResult.stderr).toBe(expected.dockerFails);
    // A daemon error exits 1. Any other rejection comes before the daemon is contacted.
    const daemonRejects = expected.rejected.source.includes("dockerignore");
    const ours = await run(daemonRejects ? {} : unreachable);
    expect(ours.stderr).toMatch(expected.rejected);
    expect(ours.exitCode).toBe(daemonRejects ? 1 : 2);
    expect(ours.stdout).toBe("");
  });
});

// Root reads a directory of mode 000 anyway, so both CLIs run as nobody (uid 65534) here. The
// Docker CLI checks the context before it connects, so it needs no access to the daemon's socket.
const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] as const;

interface UnreadableCase {
  name: string;
  locked: string;
  dockerignore: string;
  /** What docker prints, or undefined when it passes the check and fails on the socket. */
  dockerError: ((locked: string) => string) | undefined;
}

const unreadableCases: readonly UnreadableCase[] = [
  {
    name: "unreadable directory",
    locked: "app/locked",
    dockerignore: "",
    dockerError: (locked) => `can't stat '${locked}'`,
  },
  {
    name: "unreadable file",
    locked: "app/locked.txt",
    dockerignore: "",
    dockerError: (locked) => `no permission to read from '${locked}'`,
  },
  // Go's filepath.Walk reads a directory before the walk function can skip it.
  {
    name: "excluded unreadable directory",
    locked: "app/locked",
    dockerignore: "locked\n",
    dockerError: (locked) => `can't stat '${locked}'`,
  },
  {
    name: "unreadable directory inside an excluded one",
    locked: "app/skipped/locked",
    dockerignore: "skipped\n",
    dockerError: undefined,
  },
];

describe.skipIf(skipIntegration)("unreadable files against docker build", () => {
  let root: string;

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "modal-image-unreadable-"));
    await fs.chmod(root, 0o755);
  });

  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  it.each(unreadableCases)("$name", async ({ locked, dockerignore, dockerError }) => {
    const project = await fs.mkdtemp(path.join(root, "project-"));
    await fs.chmod(project, 0o755);
    await writeTree(project, {
      files: { "app/Dockerfile": copyAll, "app/a.txt": "a", "app/.dockerignore": dockerignore },
    });
    const lockedPath = path.join(project, locked);
    if (locked.endsWith(".txt")) await fs.writeFile(lockedPath, "locked");
    else await fs.mkdir(lockedPath, { recursive: true });
    await fs.chmod(lockedPath, 0);
    const configFile = path.join(project, "image.config.ts");
    await fs.writeFile(
      configFile,
      configText(`{ app: ${fromBusybox}.addLocalDir("app", "/out") }`),
    );
    const home = path.join(project, ".home");
    await fs.mkdir(home);
    await fs.chown(home, 65534, 65534);

    const dockerResult = await execa(
      nobody[0],
      [...nobody.slice(1), "docker", "build", path.join(project, "app")],
      { env: { DOCKER_BUILDKIT: "0", HOME: home }, reject: false },
    );
    const ours = await execa(nobody[0], [...nobody.slice(1), binPath, "build", "-c", configFile], {
      cwd: project,
      env: { ...unreachable, MODAL_IMAGE_HOME: home, HOME: home, NO_COLOR: "1" },
      reject: false,
      stdin: "ignore",
    });

    expect(dockerResult.exitCode).not.toBe(0);
    if (dockerError === undefined) {
      // Both passed the context check and failed on the daemon only.
      expect(dockerResult.stderr).toContain("permission denied while trying to connect");
      expect(ours.stderr).toContain("/nonexistent/modal-image-test.sock");
      expect(ours.exitCode).toBe(1);
      return;
    }
    expect(dockerResult.stderr).toContain(dockerError(lockedPath));
    expect(ours.stderr).toContain(`cannot read ${lockedPath}: EACCES`);
    expect(ours.exitCode).toBe(2);
  });
});
