/**
 * The library API: define images in TypeScript, then build, publish and resolve them from a
 * script, as the CLI does. Functions return data and throw ModalImageError subclasses; they
 * never print or exit.
 */
export { Image } from "./image/image.js";
export { Secret } from "./image/secret.js";
export type {
  AddLocalDirOptions,
  DebianSlimOptions,
  FromDockerfileOptions,
  ImageBase,
  ImageStep,
  PipInstallOptions,
  RunCommandsOptions,
  SecretOptions,
  SecretSpec,
  UvPipInstallOptions,
} from "./image/image.js";
export { validateImage, type Problem } from "./image/validate.js";
export { defineConfig, type ModalImageConfig } from "./config/define.js";
export { loadConfig, type LoadedConfig } from "./config/load.js";
export { generateDockerfile } from "./dockerfile/generate.js";
export { build, type BuildOptions, type BuildResult, type BuiltImage } from "./commands/build.js";
export { publish } from "./commands/publish.js";
export { resolve, tags } from "./commands/resolve.js";
export { dockerfile } from "./commands/dockerfile.js";
export { run, type RunOptions, type RunResult } from "./commands/run.js";
export { init, type InitOptions } from "./commands/init.js";
export type { CommandOptions } from "./commands/options.js";
export type { TagRecord } from "./index-store/local.js";
export type { ProgressEvent } from "./output/progress.js";
export {
  ExitCode,
  InterruptedError,
  ModalImageError,
  NotFoundError,
  OperationError,
  UsageError,
} from "./errors.js";
