import { lstat } from "node:fs/promises";
import path from "node:path";
import { UsageError } from "../errors.js";
import { hasCode, unreadablePath } from "./entry.js";

const insideHint =
  "local paths stay inside the config file's directory, which is the root of the build " +
  "context, as COPY sources stay inside the context of `docker build`. Move the files there, " +
  "or move the config file to a directory above them";

/**
 * Returns why `localPath`, resolved against `root`, leads outside `root`, or undefined when it
 * stays inside. Only the text is checked: `..` may appear where the path stays inside.
 */
export function outsideRootProblem(root: string, localPath: string): string | undefined {
  const resolved = path.resolve(root, localPath);
  const relative = path.relative(root, resolved);
  const inside =
    relative === "" ||
    (relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
  if (inside) return undefined;
  return `local path ${JSON.stringify(localPath)} leads outside ${root}, the config file's directory`;
}

/**
 * Checks that a local path stays inside `root` as text and on disk: no component below `root`,
 * the last one included, may be a symbolic link, so that no link leads the build outside.
 * A missing component ends the check, and collecting the path reports it as not found.
 * Throws `UsageError` naming the path and the rule.
 * NOTE: a directory replaced by a link after this check and before the path is read is followed.
 */
export async function checkLocalPath(root: string, localPath: string): Promise<void> {
  const problem = outsideRootProblem(root, localPath);
  if (problem !== undefined) throw new UsageError(problem, { hint: insideHint });

  const resolved = path.resolve(root, localPath);
  const components = path.relative(root, resolved).split(path.sep).filter(Boolean);
  let current = root;
  for (const component of components) {
    current = path.join(current, component);
    const stats = await lstat(current).catch((error: unknown) => {
      if (hasCode(error, "ENOENT") || hasCode(error, "ENOTDIR")) return undefined;
      throw unreadablePath(current, error);
    });
    if (stats === undefined) return;
    if (stats.isSymbolicLink()) {
      throw new UsageError(`local path ${resolved} goes through the symbolic link ${current}`, {
        hint:
          "name the path inside the config file's directory that the link points to. Links in " +
          "local paths are not followed, so that nothing outside that directory is read",
      });
    }
  }
}
