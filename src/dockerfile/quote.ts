/**
 * Encoders for values that enter Dockerfile text. Each keeps a value byte for byte and never
 * lets it change the structure of the file: no value can end a line, start an instruction or
 * be expanded as a variable.
 */

export const defaultEscape = "\\";

// Characters that need no quoting in a word the builder expands (ENV, WORKDIR, COPY).
const bareWordRe = /^[A-Za-z0-9_./@%+=:,~-]+$/;

/**
 * Quotes a word that the builder passes through its variable expansion (ENV values, WORKDIR,
 * COPY paths). Inside double quotes the expander treats only `"`, `$` and the escape
 * character as special, so escaping those three is enough.
 */
export function quoteWord(value: string, escape = defaultEscape): string {
  if (bareWordRe.test(value)) return value;
  const special = new Set(['"', "$", escape]);
  let quoted = '"';
  for (const char of value) quoted += special.has(char) ? escape + char : char;
  return `${quoted}"`;
}

/** Writes an exec-form (JSON) argument list. The builder expands no variables in it for RUN, CMD or ENTRYPOINT. */
export function jsonArray(values: readonly string[]): string {
  return `[${values.map((value) => JSON.stringify(value)).join(", ")}]`;
}

/** Quotes one word for POSIX `sh`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Writes a RUN instruction in exec form, so the command text is never parsed as Dockerfile syntax. */
export function runShell(script: string): string {
  return `RUN ${jsonArray(["/bin/sh", "-c", script])}`;
}
