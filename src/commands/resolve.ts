import type { TagRecord } from "../index-store/local.js";
import { parseNameRef } from "../names.js";
import { openIndex, type CommandOptions } from "./options.js";

/** Looks a `NAME[:TAG]` up in the name index; throws a NotFoundError (exit 3) when it is missing. */
export async function resolve(nameRef: string, options: CommandOptions = {}): Promise<TagRecord> {
  return openIndex(options).resolve(parseNameRef(nameRef));
}

/** Lists the tags of a name, newest first; throws a NotFoundError (exit 3) when it has none. */
export async function tags(name: string, options: CommandOptions = {}): Promise<TagRecord[]> {
  const { assertName } = await import("../names.js");
  assertName(name);
  return openIndex(options).tags(name);
}
