// Bundles the CLI and the library entry into dist/bundle/, with the modules they share in
// common chunks, so that a config's `import "modal-image"` and the CLI load one copy.
// Dependencies are bundled too, which saves Node from resolving and lexing hundreds of files at
// every start. Two stay external: jiti loads its Babel build from a relative path on demand, and
// typescript is an optional peer of cosmiconfig that this package never uses.
//
// dockerode and docker-modem are bundled, but three of their modules load only when called (see
// `dependencyEdits`). docker-modem's SSH transport loads ssh2. dockerode's own BuildKit session and
// progress decoder load gRPC and protobuf, and read .proto files next to their sources. Loaded
// at start-up they took about 85 ms and 15 MiB in every command that talks to the daemon. This
// package never calls the two dockerode modules, and needs SSH only for an ssh:// DOCKER_HOST.

import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { build, type Plugin } from "esbuild";

const outdir = "dist/bundle";
const external = ["jiti", "typescript"];

/** Source edits to bundled dependencies, each applied to the one line it names. */
const dependencyEdits = [
  {
    file: "node_modules/docker-modem/lib/modem.js",
    from: "ssh = require('./ssh'),",
    to: "ssh = (options) => require('docker-modem/lib/ssh.js')(options),",
  },
  {
    file: "node_modules/dockerode/lib/docker.js",
    from: "withSession = require('./session'),",
    to: "withSession = (...args) => require('dockerode/lib/session.js')(...args),",
  },
  {
    file: "node_modules/dockerode/lib/docker.js",
    from: "var buildkit = require('./buildkit');",
    to: "var buildkit = require('dockerode/lib/buildkit.js');",
  },
  // docker-modem 5.0.7 formats an ssh:// DOCKER_HOST as `ssh:HOST:PORT...` without the slashes,
  // and Node 20 prints a DEP0170 warning when it parses that back, which broke the JSON lines
  // of --progress json. With the slashes the URL parses cleanly; http and https get them anyway.
  {
    file: "node_modules/docker-modem/lib/modem.js",
    from: "protocol: parsed.protocol || this.protocol,",
    to: "protocol: parsed.protocol || this.protocol, slashes: true,",
  },
];

/**
 * Applies `dependencyEdits` and keeps the modules that its lazy requires name out of the bundle,
 * so that Node loads the installed files, with their own paths, only when they are called.
 * Fails the build when a dependency update changed a line the edits expect.
 */
const dependencyEditPlugin: Plugin = {
  name: "dependency-edits",
  setup(build) {
    const files = new Set(dependencyEdits.map((edit) => path.resolve(edit.file)));
    build.onResolve(
      { filter: /^(docker-modem\/lib\/ssh|dockerode\/lib\/(session|buildkit))\.js$/ },
      (args) => ({
        path: args.path,
        external: true,
      }),
    );
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!files.has(args.path)) return undefined;
      let contents = await readFile(args.path, "utf8");
      for (const edit of dependencyEdits) {
        if (path.resolve(edit.file) !== args.path) continue;
        if (!contents.includes(edit.from)) {
          throw new Error(
            `${edit.file} no longer contains ${JSON.stringify(edit.from)}; update scripts/bundle.ts`,
          );
        }
        contents = contents.replace(edit.from, edit.to);
      }
      return { contents, loader: "js" };
    });
  },
};

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: ["src/cli.ts", "src/index.ts"],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20.19",
  external,
  plugins: [dependencyEditPlugin],
  // Bundled CommonJS dependencies call require() for Node's built-in modules.
  banner: {
    js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
  },
  logLevel: "warning",
});

const fastPath = await build({
  entryPoints: ["src/fast-path.ts"],
  outfile: path.join(outdir, "fast-path.cjs"),
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20.19",
  external,
  metafile: true,
  // `import.meta` is empty in CommonJS, so a module that needs it must not be in this file.
  logOverride: { "empty-import-meta": "error" },
  logLevel: "warning",
});

// Modules whose second copy would break `instanceof` checks or slow every start.
const forbidden = ["src/config/load.ts", "src/image/image.ts", "src/index-store/registry.ts"];
const inputs = Object.keys(fastPath.metafile.inputs);
const found = forbidden.filter((file) => inputs.includes(file));
if (found.length > 0) {
  throw new Error(`the fast path must not bundle ${found.join(", ")}; import them from the CLI`);
}
