/** Compares two strings by UTF-16 code units, the order of `<`, for `Array.prototype.sort`. */
export function compareStrings(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}
