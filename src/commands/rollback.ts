import { parseExpected } from "../index-store/local.js";
import type { TagRecord } from "../index-store/types.js";
import { isDigest, parseNameRef } from "../names.js";
import { UsageError } from "../errors.js";
import { openIndex, type CommandOptions } from "./options.js";

export interface RollbackCommandOptions extends CommandOptions {
  /** Digest of an earlier value to go back to. @default the value before the current one */
  to?: string;
  /** The digest the tag must have now, or `none`. */
  expect?: string;
}

/** Points a tag back at an earlier value from its history, without building or pulling. */
export async function rollback(
  nameRef: string,
  options: RollbackCommandOptions = {},
): Promise<TagRecord> {
  const ref = parseNameRef(nameRef);
  const expect = parseExpected(options.expect);
  if (options.to !== undefined && !isDigest(options.to)) {
    throw new UsageError(`invalid --to value ${JSON.stringify(options.to)}`, {
      hint: `use a digest (sha256:<64 hex>) from: modal-image history ${nameRef}`,
    });
  }
  return (await openIndex(options)).rollback(ref, {
    ...(options.to === undefined ? {} : { to: options.to }),
    ...(expect === undefined ? {} : { expect }),
  });
}

/** Removes a tag from the index and returns the value it had. Its history stays. */
export async function untag(
  nameRef: string,
  options: CommandOptions & { expect?: string } = {},
): Promise<TagRecord> {
  const ref = parseNameRef(nameRef);
  return (await openIndex(options)).untag(ref, parseExpected(options.expect));
}
