import type { TagRecord } from "../index-store/types.js";

/**
 * Writes rows as columns separated by two spaces, the last column unpadded. The header row is
 * written only when stdout is a terminal: scripts read the rows, or use --json.
 */
export function writeTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const all = process.stdout.isTTY ? [header, ...rows] : rows;
  const widths = header.map((_, column) =>
    Math.max(...all.map((row) => (row[column] ?? "").length)),
  );
  for (const row of all) {
    const cells = row.map((cell, column) =>
      column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0),
    );
    process.stdout.write(`${cells.join("  ")}\n`);
  }
}

/** Writes tags as `TAG  DIGEST  PUBLISHED` rows, or with `quiet` one tag per line. */
export function writeTagTable(records: readonly TagRecord[], quiet: boolean): void {
  if (quiet) {
    for (const record of records) process.stdout.write(`${record.tag}\n`);
    return;
  }
  const rows = records.map((record) => [record.tag, record.digest, record.publishedAt]);
  writeTable(["TAG", "DIGEST", "PUBLISHED"], rows);
}
