import { generateImage } from "../build/prepare.js";
import { loadConfig } from "../config/load.js";
import { UsageError } from "../errors.js";
import { openIndex, type CommandOptions } from "./options.js";

/**
 * Returns the Dockerfile text generated for one definition. Reads the config, the local files
 * it names and the name index (for `fromName` bases), but contacts no daemon or registry.
 */
export async function dockerfile(image: string, options: CommandOptions = {}): Promise<string> {
  const config = await loadConfig(options);
  const definition = config.images.get(image);
  if (!definition) {
    throw new UsageError(`no image ${JSON.stringify(image)} in ${config.filepath}`, {
      hint: `defined images: ${[...config.images.keys()].join(", ")}`,
    });
  }
  const generated = await generateImage(definition, {
    baseDir: config.dir,
    index: await openIndex(options, config),
  });
  return generated.dockerfile;
}
