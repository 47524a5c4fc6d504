import type { NameListing, TagRecord } from "../index-store/types.js";
import { assertTagsOperand, parseNameRef } from "../names.js";
import { openIndex, type CommandOptions } from "./options.js";

/** Looks a `NAME[:TAG]` up in the name index; throws a NotFoundError (exit 3) when it is missing. */
export async function resolve(nameRef: string, options: CommandOptions = {}): Promise<TagRecord> {
  const ref = parseNameRef(nameRef);
  return (await openIndex(options)).resolve(ref);
}

/** Lists the tags of a name, newest first; throws a NotFoundError (exit 3) when it has none. */
export async function tags(name: string, options: CommandOptions = {}): Promise<TagRecord[]> {
  assertTagsOperand(name);
  return (await openIndex(options)).tags(name);
}

/** Lists every value a tag has had, newest first, with how it got there. */
export async function history(nameRef: string, options: CommandOptions = {}): Promise<TagRecord[]> {
  const ref = parseNameRef(nameRef);
  return (await openIndex(options)).history(ref);
}

/** Lists the names in the index that start with `prefix`, each with its tags. */
export async function names(prefix = "", options: CommandOptions = {}): Promise<NameListing[]> {
  return (await openIndex(options)).names(prefix);
}
