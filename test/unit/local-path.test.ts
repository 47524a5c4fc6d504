import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { prepareImage } from "../../src/build/prepare.js";
import { checkLocalPath } from "../../src/context/local-path.js";
import { UsageError } from "../../src/errors.js";
import { Image } from "../../src/image/image.js";
import { LocalIndex } from "../../src/index-store/local.js";

let root: string;
let project: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "modal-image-local-path-"));
  project = join(root, "project");
  await mkdir(join(project, "real", "sub"), { recursive: true });
  await writeFile(join(project, "real", "sub", "file.txt"), "inside");
  await mkdir(join(root, "outside"));
  await writeFile(join(root, "outside", "file.txt"), "outside");
  await symlink("../outside", join(project, "out-link"));
  await symlink("real", join(project, "in-link"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("checkLocalPath", () => {
  test.each([
    ["out-link/file.txt", "out-link"],
    ["in-link/sub/file.txt", "in-link"],
    ["in-link", "in-link"],
    ["real/../in-link/sub", "in-link"],
  ])("rejects %j through a symbolic link", async (localPath, link) => {
    const result = checkLocalPath(project, localPath);
    await expect(result).rejects.toThrow(UsageError);
    await expect(result).rejects.toThrow(`through the symbolic link ${join(project, link)}`);
  });

  test("rejects a relative path outside", async () => {
    await expect(checkLocalPath(project, "../outside/file.txt")).rejects.toThrow("leads outside");
  });

  test("rejects an absolute path outside", async () => {
    await expect(checkLocalPath(project, join(root, "outside"))).rejects.toThrow("leads outside");
  });

  test.each(["real/sub/file.txt", "real/../real/sub", "missing/file.txt", "."])(
    "accepts %j",
    async (localPath) => {
      await expect(checkLocalPath(project, localPath)).resolves.toBeUndefined();
    },
  );
});

describe("prepareImage local paths", () => {
  const index = (): LocalIndex => new LocalIndex(join(root, "home"));

  test.each([
    ["addLocalFile", Image.fromScratch().addLocalFile("out-link/file.txt", "/f")],
    ["addLocalDir", Image.fromScratch().addLocalDir("in-link/sub", "/d")],
    ["pipInstallFromRequirements", Image.fromScratch().pipInstallFromRequirements("out-link/r")],
    ["fromDockerfile", Image.fromDockerfile("in-link/Dockerfile")],
    ["fromDockerfile contextDir", Image.fromDockerfile("D", { contextDir: "out-link" })],
  ])("%s rejects an intermediate link", async (_method, image) => {
    await writeFile(join(project, "real", "Dockerfile"), "FROM scratch\n");
    await writeFile(join(project, "D"), "FROM scratch\n");
    const result = prepareImage("app", image, { baseDir: project, index: index() });
    await expect(result).rejects.toThrow(/through the symbolic link .*(out|in)-link$/);
  });
});
