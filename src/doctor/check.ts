import { isModalImageError } from "../errors.js";

export type CheckStatus = "ok" | "warn" | "fail" | "skip";

/** One finding of `doctor`. The README documents this shape as `doctor --json`. */
export interface DoctorCheck {
  /** Stable identifier: config, daemon, base-images, registry, credentials or index. */
  check: string;
  /** `skip` when a check could not run because an earlier one failed or does not apply. */
  status: CheckStatus;
  /** One line that describes the result. */
  finding: string;
  /** The next step for the user; absent when the status is `ok` or `skip`. */
  fix?: string;
  /** Values a script may read, such as versions and addresses. Never credentials. */
  details?: Record<string, unknown>;
}

/**
 * Time limit of each request to the daemon or a registry.
 * NOTE: a credential helper keeps its own 60 s limit, because a keychain may wait for a user.
 */
export const checkTimeoutMs = 5_000;

/** Turns an error into a failed check, with the error's hint as the fix. */
export function failedCheck(
  check: string,
  error: unknown,
  fallbackFix: string,
  details?: Record<string, unknown>,
): DoctorCheck {
  const message = error instanceof Error ? error.message : String(error);
  const hint = isModalImageError(error) ? error.hint : undefined;
  return {
    check,
    status: "fail",
    finding: message,
    fix: hint ?? fallbackFix,
    ...(details ? { details } : {}),
  };
}
