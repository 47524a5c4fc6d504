/**
 * Values that try to break out of wherever they are written: shell syntax, quotes, escapes,
 * line breaks, NUL, option-like text, long text, non-ASCII text and the empty string. Each must
 * reach the image byte for byte or be rejected with exit 2.
 */
export const hostileValues = {
  semicolon: "a;touch /pwned",
  and: "a && touch /pwned",
  pipe: "a | touch /pwned",
  substitution: "$(touch /pwned)",
  backticks: "`touch /pwned`",
  singleQuote: "a'b",
  doubleQuote: 'a"b',
  backslash: "a\\b\\",
  newline: "a\nRUN touch /pwned",
  carriageReturn: "a\rRUN touch /pwned",
  crlf: "a\r\nRUN touch /pwned",
  nul: "a\u0000b",
  leadingDash: "-rf",
  long: "x".repeat(10_000),
  overLineLimit: "x".repeat(70_000),
  unicode: "żółw ✓ 日本 🐢",
  empty: "",
} as const;

export type HostileKey = keyof typeof hostileValues;

export const hostileKeys = Object.keys(hostileValues) as HostileKey[];
