/** Config file names, searched in this order in each directory from the working one upward. */
export const configFileNames = [
  "image.config.ts",
  "image.config.mts",
  "image.config.js",
  "image.config.mjs",
  "image.config.cjs",
  "image.config.json",
];

/** The key of package.json that contains a config. */
export const packageJsonKey = "modal-image";

/** Files searched in each directory, in order. A package.json counts only with `packageJsonKey`. */
export const searchPlaces = ["package.json", ...configFileNames];

/**
 * Parses JSON text after removing a UTF-8 byte order mark, which Windows editors write and
 * JSON.parse rejects.
 */
export function parseJsonText(text: string): unknown {
  return JSON.parse(text.replace(/^\uFEFF/, ""));
}
