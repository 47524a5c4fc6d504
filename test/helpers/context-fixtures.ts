import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/**
 * A directory with a .dockerignore and the paths that `docker build` keeps from it. The unit
 * tests check `collectContext` against `expected`. The integration test checks `expected`
 * against what Docker CLI 28.2 with the classic builder of Docker Engine 20.10 copies into an
 * image, so every expectation here is checked against the real `docker build`.
 */
export interface IgnoreFixture {
  name: string;
  /** Exact text of .dockerignore, or no file when undefined. */
  dockerignore?: string;
  /** Regular files to create, each containing its own path. Parent directories are created. */
  files: readonly string[];
  directories?: readonly string[];
  /** Symlink path to target, as stored on disk. */
  symlinks?: Readonly<Record<string, string>>;
  modes?: Readonly<Record<string, number>>;
  /** Posix paths of the context's entries relative to the directory, in `collectContext` order. */
  expected: readonly string[];
}

/** The Dockerfile every fixture contains, so that `docker build` can run on the directory as is. */
export const FIXTURE_DOCKERFILE = "FROM scratch\nCOPY . /ctx\n";

const LONG_NAME = `${"n".repeat(146)}.txt`;
const DEEP_DIRECTORIES = [
  "d".repeat(90),
  `${"d".repeat(90)}/${"e".repeat(90)}`,
  `${"d".repeat(90)}/${"e".repeat(90)}/${"f".repeat(90)}`,
] as const;
const DEEP_PATH = `${DEEP_DIRECTORIES[2]}/deep.txt`;

export const ignoreFixtures: readonly IgnoreFixture[] = [
  // Docker escapes `(`, `)` and `+`, matches case-sensitively, and treats a leading `**` followed
  // by literal text as a suffix test, so `**.log` excludes deep/x/y.log and `**foo` excludes barfoo.
  {
    name: "regexp characters and suffix patterns",
    dockerignore: "file(1).txt\na+b\n**.log\n**foo\nREADME.md\n",
    files: [
      "file(1).txt",
      "file1.txt",
      "a+b",
      "aab",
      "x.log",
      "deep/x/y.log",
      "deep/z",
      "barfoo",
      "foo",
      "README.md",
      "readme.md",
    ],
    expected: [
      ".dockerignore",
      "Dockerfile",
      "aab",
      "deep",
      "deep/x",
      "deep/z",
      "file1.txt",
      "readme.md",
    ],
  },
  // logs is walked because the exceptions start with `logs/`, but like Docker's tar the context
  // has no entry for it: the daemon creates it while extracting.
  {
    name: "exceptions inside an excluded directory",
    dockerignore: "logs\n!logs/keep.txt\n!logs/sub/keep.txt\n",
    files: [
      "logs/a.log",
      "logs/keep.txt",
      "logs/sub/keep.txt",
      "logs/sub/other",
      "logs/other/keep.txt",
    ],
    expected: [".dockerignore", "Dockerfile", "logs/keep.txt", "logs/sub/keep.txt"],
  },
  // `*` excludes .dockerignore and Dockerfile too. The Docker CLI still sends both (it adds
  // exceptions for them), and neither reaches the image.
  {
    name: "star with one exception",
    dockerignore: "*\n!src/keep\n",
    files: ["a", "b", "src/keep", "src/other", "src/deep/keep"],
    expected: ["src/keep"],
  },
  // Docker walks an excluded directory only when an exception's text starts with the directory's
  // path, so neither exception re-includes anything, although `!*/keep` matches src/keep.
  {
    name: "wildcard exception does not reopen a directory",
    dockerignore: "*\n!*/keep\n!?rc2/keep\n",
    files: ["keep", "src/keep", "src2/keep", "src/other"],
    expected: [],
  },
  {
    name: "exclude everything but a few paths",
    dockerignore: "*\n!README.md\n!src\nsrc/**/*.test.ts\n!src/keep.test.ts\n",
    files: [
      "README.md",
      "LICENSE",
      "src/a.ts",
      "src/a.test.ts",
      "src/keep.test.ts",
      "src/lib/b.ts",
      "src/lib/b.test.ts",
      "docs/x.md",
    ],
    expected: ["README.md", "src", "src/a.ts", "src/keep.test.ts", "src/lib", "src/lib/b.ts"],
  },
  // `#` starts a comment only in the first column. The BOM is dropped before `/build` is read.
  {
    name: "comments, blank lines, CRLF, BOM and leading slashes",
    dockerignore:
      "\uFEFF/build\r\n# comment\r\n\r\n   \r\n./tmp/\r\n  spaced.txt  \r\n! build/keep\r\n/#hash\r\n #indented\r\n",
    files: [
      "build/x",
      "build/keep",
      "tmp/y",
      "spaced.txt",
      "#hash",
      "# comment",
      "#indented",
      "bom",
    ],
    expected: ["# comment", ".dockerignore", "Dockerfile", "bom", "build/keep"],
  },
  // `!**/node_modules/keep` does not start with `node_modules/`, so it reopens nothing, while
  // `!pkg/node_modules/keep` reopens pkg/node_modules.
  {
    name: "double star directories",
    dockerignore: "**/node_modules\n!**/node_modules/keep\n!pkg/node_modules/keep\n",
    files: [
      "node_modules/a",
      "node_modules/keep",
      "pkg/node_modules/b",
      "pkg/node_modules/keep",
      "pkg/index.js",
      "other/node_modules/keep",
    ],
    expected: [
      ".dockerignore",
      "Dockerfile",
      "other",
      "pkg",
      "pkg/index.js",
      "pkg/node_modules/keep",
    ],
  },
  // For the directory `a`, Docker skips the second `a` (the path is already excluded) and records
  // no match for it. For `a/b` that pattern is then tested on `a/b` alone, so the exception wins.
  {
    name: "pattern order after parent results",
    dockerignore: "a\n!a/b\na\n",
    files: ["a/b", "a/c", "a/b2/x"],
    expected: [".dockerignore", "Dockerfile", "a/b"],
  },
  {
    name: "character classes and case",
    dockerignore: "[Bb]uild\n*.[ch]\n!keep.c\ndocs/\n!docs/api/**\n",
    files: [
      "Build/x",
      "build/y",
      "BUILD/z",
      "a.c",
      "a.h",
      "keep.c",
      "a.cpp",
      "docs/a.md",
      "docs/api/x.md",
      "docs/api/deep/y.md",
    ],
    expected: [
      ".dockerignore",
      "BUILD",
      "BUILD/z",
      "Dockerfile",
      "a.cpp",
      "docs/api/deep",
      "docs/api/deep/y.md",
      "docs/api/x.md",
      "keep.c",
    ],
  },
  // `?` matches one code point: NFC é and the emoji are excluded, NFD é (two code points) is kept.
  // Go's `.` stops only at a newline, so `**/*.log` misses new\nline/x.log but excludes
  // carriage\rreturn/x.log. Symlinks stay links.
  {
    name: "odd names and symlinks",
    dockerignore: "**/*.log\n?.txt\n",
    files: [
      "with space.txt",
      "\u00e9.txt",
      "e\u0301.txt",
      "\u{1F600}.txt",
      "a.txt",
      "-dash",
      "new\nline/x.log",
      "carriage\rreturn/x.log",
      "top.log",
      LONG_NAME,
      DEEP_PATH,
      "bin/run.sh",
      "private/secret",
    ],
    symlinks: {
      "links/outside": "/etc/passwd",
      "links/dangling": "does/not/exist",
      "links/sibling": "../with space.txt",
      "links/dir": "../bin",
    },
    modes: { "bin/run.sh": 0o755, "private/secret": 0o600, private: 0o700 },
    expected: [
      "-dash",
      ".dockerignore",
      "Dockerfile",
      "bin",
      "bin/run.sh",
      "carriage\rreturn",
      DEEP_DIRECTORIES[0],
      DEEP_DIRECTORIES[1],
      DEEP_DIRECTORIES[2],
      DEEP_PATH,
      "e\u0301.txt",
      "links",
      "links/dangling",
      "links/dir",
      "links/outside",
      "links/sibling",
      "new\nline",
      "new\nline/x.log",
      LONG_NAME,
      "private",
      "private/secret",
      "with space.txt",
    ],
  },
];

/** Creates the fixture's files, directories, symlinks, .dockerignore and Dockerfile in `root`. */
export async function writeFixture(root: string, fixture: IgnoreFixture): Promise<void> {
  await writeFile(join(root, "Dockerfile"), FIXTURE_DOCKERFILE);
  if (fixture.dockerignore !== undefined) {
    await writeFile(join(root, ".dockerignore"), fixture.dockerignore);
  }
  for (const directory of fixture.directories ?? []) {
    await mkdir(join(root, directory), { recursive: true });
  }
  for (const file of fixture.files) {
    await mkdir(dirname(join(root, file)), { recursive: true });
    await writeFile(join(root, file), file);
  }
  for (const [path, target] of Object.entries(fixture.symlinks ?? {})) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await symlink(target, join(root, path));
  }
  for (const [path, mode] of Object.entries(fixture.modes ?? {})) {
    await chmod(join(root, path), mode);
  }
}
