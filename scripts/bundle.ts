// Bundles the CLI, the library entry and the fast path into dist/bundle/, with the modules they
// share in common chunks, so that a config's `import "modal-image"` and the CLI load one copy.
// Dependencies are bundled too, which saves Node from resolving and lexing hundreds of files at
// every start. Three stay external: dockerode reads .proto files next to its sources, jiti loads
// its Babel build from a relative path on demand, and typescript is an optional peer of
// cosmiconfig that this package never uses.
import { rm } from "node:fs/promises";
import { build } from "esbuild";

const outdir = "dist/bundle";

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: ["src/cli.ts", "src/index.ts", "src/fast-path.ts"],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20.19",
  external: ["dockerode", "jiti", "typescript"],
  // Bundled CommonJS dependencies call require() for Node's built-in modules.
  banner: {
    js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
  },
  logLevel: "warning",
});
