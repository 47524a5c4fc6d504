// Bundles the CLI and the library entry into dist/bundle/, with the modules they share in
// common chunks, so that a config's `import "modal-image"` and the CLI load one copy.
// Dependencies are bundled too, which saves Node from resolving and lexing hundreds of files at
// every start. Three stay external: dockerode reads .proto files next to its sources, jiti loads
// its Babel build from a relative path on demand, and typescript is an optional peer of
// cosmiconfig that this package never uses.
//
// The fast path of `resolve` and `tags` is a separate CommonJS file, because Node starts a
// CommonJS entry sooner than an ES module one. It contains its own copy of the few modules it uses,
// so it must not reach the config loader or the Image classes, whose one copy is in the ES
// module chunks.
import { rm } from "node:fs/promises";
import path from "node:path";
import { build } from "esbuild";

const outdir = "dist/bundle";
const external = ["dockerode", "jiti", "typescript"];

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
