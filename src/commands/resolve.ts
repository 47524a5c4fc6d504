import type { NameListing, TagRecord } from "../index-store/types.js";
import { UsageError } from "../errors.js";
import { assertName, parseNameRef, splitNameRef } from "../names.js";
import { openIndex, type CommandOptions } from "./options.js";

/** Looks a `NAME[:TAG]` up in the name index; throws a NotFoundError (exit 3) when it is missing. */
export async function resolve(nameRef: string, options: CommandOptions = {}): Promise<TagRecord> {
  return (await openIndex(options)).resolve(parseNameRef(nameRef));
}

/** Lists the tags of a name, newest first; throws a NotFoundError (exit 3) when it has none. */
export async function tags(name: string, options: CommandOptions = {}): Promise<TagRecord[]> {
  if (name.includes(":")) {
    throw new UsageError(`invalid name ${JSON.stringify(name)}: tags takes a NAME without a tag`, {
      hint: `list the tags with: modal-image tags ${splitNameRef(name).name}`,
    });
  }
  assertName(name);
  return (await openIndex(options)).tags(name);
}

/** Lists every value a tag has had, newest first, with how it got there. */
export async function history(nameRef: string, options: CommandOptions = {}): Promise<TagRecord[]> {
  return (await openIndex(options)).history(parseNameRef(nameRef));
}

/** Lists the names in the index that start with `prefix`, each with its tags. */
export async function names(prefix = "", options: CommandOptions = {}): Promise<NameListing[]> {
  return (await openIndex(options)).names(prefix);
}
