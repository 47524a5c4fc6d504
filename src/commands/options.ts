import { modalImageHome } from "../home.js";
import { LocalIndex } from "../index-store/local.js";
import type { ProgressEvent } from "../output/progress.js";

/** Options every command function takes. All are optional for library callers. */
export interface CommandOptions {
  /** Directory the config search starts from. @default process.cwd() */
  cwd?: string;
  /** Config file to load instead of searching. */
  configPath?: string;
  /** Environment to read settings from. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Aborts the daemon's work when signalled. */
  signal?: AbortSignal;
  /** Receives progress while images are built, pushed and published. */
  onProgress?: (event: ProgressEvent) => void;
}

export function openIndex(options: CommandOptions): LocalIndex {
  return new LocalIndex(modalImageHome(options.env ?? process.env));
}
