import os from "node:os";
import path from "node:path";

/** Returns the directory that contains the name index: `$MODAL_IMAGE_HOME`, or `~/.modal-image`. */
export function modalImageHome(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MODAL_IMAGE_HOME;
  return configured ? path.resolve(configured) : path.join(os.homedir(), ".modal-image");
}
