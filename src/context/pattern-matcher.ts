import { posix } from "node:path";

/**
 * A port of the .dockerignore matcher that `docker build` runs on the client: moby/patternmatcher
 * as vendored by Docker CLI 28 (`New`, `MatchesUsingParentResults` and the pattern compiler).
 *
 * @balena/dockerignore ports the older Docker 19.03 matcher, and the real Docker CLI 28.2 gives
 * different results for `**.log`, `**foo`, `file(1).txt` and `a+b`, so it is not used here.
 * Patterns use Linux and macOS syntax: `/` separates, `\` escapes the next character.
 */
export class PatternMatcher {
  readonly patterns: readonly CompiledPattern[];

  /** Compiles patterns that `parseIgnoreLines` normalized. Throws `InvalidPatternError`. */
  constructor(patterns: readonly string[]) {
    this.patterns = patterns.flatMap((pattern) => {
      const compiled = compilePattern(pattern);
      return compiled === undefined ? [] : [compiled];
    });
  }

  /**
   * Returns whether `file` (a posix path relative to the context root) is excluded.
   * `parent` is the `patternMatches` of the file's parent directory, or undefined at the top
   * level. Like Docker, a pattern that matched the parent counts as matching the file, and the
   * `matched` short cut of Docker's loop is kept because it changes which patterns get recorded.
   */
  match(file: string, parent: readonly boolean[] | undefined): MatchResult {
    const patternMatches = this.patterns.map(() => false);
    let excluded = false;

    this.patterns.forEach((pattern, index) => {
      let matched = parent?.[index] ?? false;
      if (!matched) {
        // Docker skips an inclusion once the path is excluded, and an exception until it is.
        if (pattern.exclusion !== excluded) return;
        matched = pattern.test(file) || (parent === undefined && matchesAncestor(pattern, file));
      }
      patternMatches[index] = matched;
      if (matched) excluded = !pattern.exclusion;
    });

    return { excluded, patternMatches };
  }

  /**
   * Returns whether an excluded directory must still be walked because an exception pattern
   * starts with its path. Docker compares the pattern text literally, so `!?rc/keep` does not
   * reopen an excluded `src` although it would match `src/keep`.
   */
  mayReinclude(directory: string): boolean {
    const prefix = `${directory}/`;
    return this.patterns.some(
      (pattern) => pattern.exclusion && `${pattern.cleaned}/`.startsWith(prefix),
    );
  }
}

export interface MatchResult {
  excluded: boolean;
  /** Per pattern, whether it matched this path or an ancestor: the `parent` of its children. */
  patternMatches: boolean[];
}

export interface CompiledPattern {
  /** The pattern after `filepath.Clean`, without its leading `!`. */
  cleaned: string;
  exclusion: boolean;
  test: (file: string) => boolean;
}

/** A pattern that Docker rejects, which fails `docker build` with "syntax error in pattern". */
export class InvalidPatternError extends Error {
  constructor(readonly pattern: string) {
    super(`invalid pattern: ${JSON.stringify(pattern)}`);
    this.name = "InvalidPatternError";
  }
}

function compilePattern(raw: string): CompiledPattern | undefined {
  let pattern = trimSpace(raw);
  if (pattern === "") return undefined;
  pattern = cleanPath(pattern);

  const exclusion = pattern.startsWith("!");
  if (exclusion) {
    if (pattern.length === 1) throw new InvalidPatternError(raw);
    pattern = pattern.slice(1);
  }
  if (!hasValidGlobSyntax(pattern)) throw new InvalidPatternError(raw);

  return { cleaned: pattern, exclusion, test: compileMatcher(pattern, raw) };
}

// Go's `unicode.IsSpace`, which differs from JavaScript's `\s` in U+0085 and U+FEFF.
const LEADING_SPACE =
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
const TRAILING_SPACE =
  /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u;

/** Go's `strings.TrimSpace`. */
export function trimSpace(text: string): string {
  return text.replace(LEADING_SPACE, "").replace(TRAILING_SPACE, "");
}

/** Go's `filepath.Clean` on Unix: posix normalization without a trailing slash. */
export function cleanPath(path: string): string {
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith("/") ? normalized.slice(0, -1) : normalized;
}

/** Docker's fallback when no parent results are given: a match on any ancestor directory counts. */
function matchesAncestor(pattern: CompiledPattern, file: string): boolean {
  const parent = posix.dirname(file);
  if (parent === ".") return false;

  const directories = parent.split("/");
  for (let count = 1; count <= directories.length; count++) {
    if (pattern.test(directories.slice(0, count).join("/"))) return true;
  }
  return false;
}

type MatchKind = "exact" | "prefix" | "suffix" | "regexp";

/** Compiles a pattern as patternmatcher does, with its exact, prefix and suffix short cuts. */
function compileMatcher(pattern: string, raw: string): (file: string) => boolean {
  const { kind, source } = translatePattern(pattern);

  switch (kind) {
    case "exact":
      return (file) => file === pattern;
    case "prefix": {
      const prefix = pattern.slice(0, -2);
      return (file) => file.startsWith(prefix);
    }
    case "suffix": {
      // A leading `**` followed only by literal text, such as `**.log`, is a plain suffix test.
      const suffix = pattern.slice(2);
      return (file) =>
        file.endsWith(suffix) || (suffix.startsWith("/") && file === suffix.slice(1));
    }
    case "regexp": {
      const regexp = compileRegExp(source, raw);
      return (file) => regexp.test(file);
    }
  }
}

// Characters that are special in a regular expression but literal in a glob (patternmatcher's
// `shouldEscape`). `^` is not among them in Docker either.
const ESCAPED = new Set([".", "+", "(", ")", "|", "{", "}", "$"]);

function translatePattern(pattern: string): { kind: MatchKind; source: string } {
  const chars = Array.from(pattern);
  let kind: MatchKind = "exact";
  let source = "^";

  for (let token = 0, i = 0; i < chars.length; token++) {
    const ch = chars[i++];
    if (ch === "*" && chars[i] === "*") {
      i++;
      if (chars[i] === "/") i++;
      if (i >= chars.length) {
        if (kind === "exact") {
          kind = "prefix";
        } else {
          // Go's `.` stops at a newline, which JavaScript's `.` does for more characters.
          source += "[^\\n]*";
          kind = "regexp";
        }
      } else {
        source += "([^\\n]*/)?";
        kind = "regexp";
      }
      if (token === 0) kind = "suffix";
    } else if (ch === "*") {
      source += "[^/]*";
      kind = "regexp";
    } else if (ch === "?") {
      source += "[^/]";
      kind = "regexp";
    } else if (ch !== undefined && ESCAPED.has(ch)) {
      source += `\\${ch}`;
    } else if (ch === "\\") {
      // hasValidGlobSyntax rejected a trailing backslash, so a character follows.
      source += `\\${chars[i++] ?? ""}`;
      kind = "regexp";
    } else if (ch === "[" || ch === "]") {
      source += ch;
      kind = "regexp";
    } else {
      source += ch;
    }
  }

  return { kind, source: `${source}$` };
}

/**
 * Compiles with the `u` flag so that `?` and classes match code points, as Go matches runes.
 * NOTE: the `u` flag rejects some escapes that Go's RE2 accepts (`\-`, a lone `]`), so those
 * patterns compile without it. Go rejects escapes such as `\q` that plain JavaScript accepts.
 */
function compileRegExp(source: string, raw: string): RegExp {
  try {
    return new RegExp(source, "u");
  } catch {
    try {
      return new RegExp(source);
    } catch {
      throw new InvalidPatternError(raw);
    }
  }
}

/** Reports whether Go's `filepath.Match` accepts the pattern, which Docker checks up front. */
function hasValidGlobSyntax(pattern: string): boolean {
  const chars = Array.from(pattern);
  let i = 0;

  while (i < chars.length) {
    const ch = chars[i];
    if (ch === "\\") {
      if (i + 1 >= chars.length) return false;
      i += 2;
    } else if (ch === "[") {
      const end = skipCharacterClass(chars, i + 1);
      if (end === undefined) return false;
      i = end;
    } else {
      i++;
    }
  }
  return true;
}

/** Returns the index after the class that starts at `start` (after its `[`), as Go parses it. */
function skipCharacterClass(chars: readonly string[], start: number): number | undefined {
  let i = chars[start] === "^" ? start + 1 : start;

  for (let ranges = 0; ; ranges++) {
    if (chars[i] === "]" && ranges > 0) return i + 1;

    const low = skipClassCharacter(chars, i);
    if (low === undefined) return undefined;
    i = low;

    if (chars[i] === "-") {
      const high = skipClassCharacter(chars, i + 1);
      if (high === undefined) return undefined;
      i = high;
    }
  }
}

/** Go's `getEsc`: one class character, which may not be `-` or `]` and must not end the pattern. */
function skipClassCharacter(chars: readonly string[], start: number): number | undefined {
  let i = start;
  const ch = chars[i];
  if (ch === undefined || ch === "-" || ch === "]") return undefined;
  if (ch === "\\") {
    i++;
    if (i >= chars.length) return undefined;
  }
  i++;
  return i < chars.length ? i : undefined;
}
