import type { Image } from "../image/image.js";

/** The default export of `image.config.ts`. */
export interface ModalImageConfig {
  /**
   * Registry and optional path that images are pushed to, as `HOST[:PORT][/PATH]`.
   * `MODAL_IMAGE_REGISTRY` and `--registry` override it. Without one, images stay in the
   * local daemon and names resolve to image IDs.
   */
  registry?: string;
  /**
   * The name index: `"local"`, files under `$MODAL_IMAGE_HOME`, or `"registry"`, the
   * registry's own tags, shared by every machine that uses the registry. `MODAL_IMAGE_INDEX`
   * and `--index` override it. @default "local"
   */
  index?: "local" | "registry";
  /** Image definitions by name. Each key is an image name in the OCI repository grammar. */
  images: Record<string, Image>;
}

/** Returns the config unchanged; it exists so editors type-check `image.config.ts`. */
export function defineConfig(config: ModalImageConfig): ModalImageConfig {
  return config;
}
