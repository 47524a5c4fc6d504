import { statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { UsageError } from "./errors.js";

/**
 * Returns the directory that contains the name index: `$MODAL_IMAGE_HOME`, or `~/.modal-image`.
 * Throws a UsageError when that path exists but is not a directory.
 */
export function modalImageHome(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MODAL_IMAGE_HOME;
  const home = configured ? path.resolve(configured) : path.join(os.homedir(), ".modal-image");
  const stats = statSync(home, { throwIfNoEntry: false });
  if (stats !== undefined && !stats.isDirectory()) {
    throw new UsageError(`the modal-image home ${home} is not a directory`, {
      hint: configured
        ? "point MODAL_IMAGE_HOME at a directory, or unset it to use ~/.modal-image"
        : `move the file ${home} away, or set MODAL_IMAGE_HOME to a directory`,
    });
  }
  return home;
}
