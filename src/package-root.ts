import { fileURLToPath } from "node:url";

// Code runs from src/ in tests and from dist/bundle/ once built. esbuild puts every bundled
// module, entry or chunk, directly in dist/bundle/, so one level or two lead to the root.
const here = new URL(".", import.meta.url);

/** Whether this code runs from the built bundle rather than from the TypeScript sources. */
export const isBundled = here.pathname.endsWith("/dist/bundle/");

const root = new URL(isBundled ? "../../" : "../", here);

/** Absolute path of a file in the package, given relative to the package root. */
export function packagePath(relative: string): string {
  return fileURLToPath(new URL(relative, root));
}
