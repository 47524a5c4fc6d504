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
