import type { NameRef } from "../names.js";

/** The operation that gave a tag its value. */
export type TagAction = "build" | "publish" | "rollback" | "untag";

/** The value of one tag: the pinned reference it resolves to, and where it came from. */
export interface TagRecord {
  name: string;
  tag: string;
  /** `REGISTRY/REPO@sha256:...`, or a local image ID `sha256:...` when no registry is set. */
  reference: string;
  /** The manifest digest, or the image ID when no registry is set. */
  digest: string;
  /** ISO 8601 time in UTC. */
  publishedAt: string;
  action: TagAction;
  /** The image definition the value was built from, where this tool built it. */
  image?: string;
  host: string;
  user: string;
}

/** A new value for a tag. */
export interface NewTagValue {
  reference: string;
  digest: string;
  action: "build" | "publish";
  image?: string;
}

/**
 * The value a tag must have for a change to apply: a digest, or `null` for a tag that must not
 * exist yet. Undefined means the change applies whatever the value is.
 */
export type ExpectedValue = string | null | undefined;

export interface RollbackOptions {
  /** Digest of an earlier value to go back to. @default the value before the current one */
  to?: string;
  expect?: ExpectedValue;
}

/** One name and its tags, newest first. */
export interface NameListing {
  name: string;
  tags: TagRecord[];
}

/** A store of names: on local disk, or in the registry. */
export interface NameIndex {
  /** Returns the tag's value, or undefined when the name or tag does not exist. */
  get(ref: NameRef): Promise<TagRecord | undefined>;
  /** Returns the tag's value, or throws a NotFoundError (exit 3). */
  resolve(ref: NameRef): Promise<TagRecord>;
  /** Lists a name's tags, newest first; throws a NotFoundError when it has none. */
  tags(name: string): Promise<TagRecord[]>;
  /** Lists every value the tag has had, newest first; throws a NotFoundError when there is none. */
  history(ref: NameRef): Promise<TagRecord[]>;
  /** Points the tag at a new value; throws a ConflictError (exit 4) when `expect` does not match. */
  publish(ref: NameRef, value: NewTagValue, expect?: ExpectedValue): Promise<TagRecord>;
  /** Points the tag back at an earlier value from its history. */
  rollback(ref: NameRef, options?: RollbackOptions): Promise<TagRecord>;
  /** Removes the tag; its history stays. */
  untag(ref: NameRef, expect?: ExpectedValue): Promise<TagRecord>;
  /** Lists names whose text starts with `prefix`, sorted, with their tags. */
  names(prefix?: string): Promise<NameListing[]>;
}
