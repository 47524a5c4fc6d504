import fs from "node:fs/promises";
import path from "node:path";

/**
 * Writes `content` to a hidden temporary file beside `file`, flushed to disk when `sync` is set,
 * then renames it over `file`, so a reader sees the old file or the whole new one.
 */
export async function writeFileAtomically(
  file: string,
  content: string,
  options: { sync?: boolean } = {},
): Promise<void> {
  // Loaded here because `resolve` imports this module through the settings cache and never writes.
  const { randomBytes } = await import("node:crypto");
  const suffix = randomBytes(6).toString("hex");
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${suffix}.tmp`);
  try {
    const handle = await fs.open(temporary, "wx");
    try {
      await handle.writeFile(content);
      if (options.sync) await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, file);
  } catch (error) {
    await fs.rm(temporary, { force: true }).catch(() => undefined);
    throw error;
  }
}
