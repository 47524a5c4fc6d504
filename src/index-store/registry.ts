import { randomBytes } from "node:crypto";
import os from "node:os";
import { NotFoundError, OperationError, UsageError } from "../errors.js";
import {
  formatNameRef,
  isValidName,
  parseImageReference,
  parsePinnedReference,
  repositoryFor,
  reservedTagPrefix,
  type NameRef,
  type RegistryLocation,
} from "../names.js";
import { RegistryClient, type BlobSource, type ManifestContent } from "../registry/client.js";
import { compareStrings } from "../util/compare.js";
import { mapWithConcurrency } from "../util/concurrency.js";
import { MediaType, manifestReferences } from "../registry/manifest.js";
import {
  emptyBlob,
  emptyDescriptor,
  historyManifest,
  historyTag,
  historyTagsOf,
  parseHistoryManifest,
  tombstoneDigest,
  tombstoneManifest,
} from "./registry-history.js";
import {
  expectConflict,
  findValue,
  replay,
  rollbackTarget,
  toRecord,
  valueOf,
  type LogEntry,
  type Replay,
} from "./log.js";
import type {
  ExpectedValue,
  NameIndex,
  NameListing,
  NewTagValue,
  RollbackOptions,
  TagRecord,
} from "./types.js";

export interface RegistryIndexOptions {
  /** Entries per page when listing tags and the catalog. @default the registry's own page size */
  pageSize?: number;
  /** Aborts the registry requests in flight, which then throw an InterruptedError. */
  signal?: AbortSignal;
}

/** Requests sent at once when reading many manifests or blobs. */
const concurrency = 8;

/** Docker Hub's API host, for pinned references without a registry host. */
const dockerHubApiHost = "registry-1.docker.io";
const dockerHubHosts = new Set(["docker.io", "index.docker.io", dockerHubApiHost]);

/** A tag change and the check it must pass. */
interface Change {
  ref: NameRef;
  repository: string;
  entry: LogEntry;
  /** The value the caller expects, checked again against the history; undefined: no check. */
  expect: ExpectedValue;
  /** The history as read before the change, when `expect` is set. */
  before: Replay | undefined;
  /** Moves the registry tag; runs only after the history accepted the entry. */
  moveTag: () => Promise<void>;
}

/**
 * The name index kept in the registry itself, for CI on many machines with no shared disk.
 * NAME is the repository `<namespace>/<name>` on the registry host and TAG its registry tag, so
 * the registry tag is the value. Each change also writes a history entry as an artifact
 * manifest under a reserved tag, as registry-history.ts describes. `history` and `rollback`
 * replay those entries with the same rules as the local index.
 */
export class RegistryIndex implements NameIndex {
  readonly location: RegistryLocation;
  private readonly env: NodeJS.ProcessEnv;
  private readonly options: RegistryIndexOptions;
  private readonly client: RegistryClient;
  private readonly otherClients = new Map<string, RegistryClient>();
  /** Parsed history entries by repository and history tag; entries never change once written. */
  private readonly entries = new Map<string, LogEntry | undefined>();
  private readonly repositoriesWithEmptyBlob = new Set<string>();

  constructor(
    location: RegistryLocation,
    env: NodeJS.ProcessEnv = process.env,
    options: RegistryIndexOptions = {},
  ) {
    this.location = location;
    this.env = env;
    this.options = options;
    this.client = new RegistryClient(location.host, { env, ...options });
  }

  async get(ref: NameRef): Promise<TagRecord | undefined> {
    const repository = this.repositoryOf(ref.name);
    const digest = await this.currentDigest(repository, ref.tag);
    if (digest === null) return undefined;
    return this.describe(repository, ref, digest, await this.client.listTags(repository));
  }

  async resolve(ref: NameRef): Promise<TagRecord> {
    const record = await this.get(ref);
    if (record) return record;
    const tags = await this.tagRecords(ref.name);
    throw new NotFoundError(`name ${formatNameRef(ref)} not found in ${this.registryLabel()}`, {
      hint:
        tags.length > 0
          ? `${ref.name} has tags ${tags.map((tag) => tag.tag).join(", ")}`
          : `build and publish it first: modal-image build --publish ${formatNameRef(ref)}`,
    });
  }

  async tags(name: string): Promise<TagRecord[]> {
    const records = await this.tagRecords(name);
    if (records.length === 0) {
      throw new NotFoundError(`name ${name} not found in ${this.registryLabel()}`, {
        hint: `build and publish it first: modal-image build --publish ${name}`,
      });
    }
    return records;
  }

  async history(ref: NameRef): Promise<TagRecord[]> {
    const repository = this.repositoryOf(ref.name);
    const { applied } = await this.readHistory(repository, ref.tag);
    if (applied.length === 0) {
      throw new NotFoundError(`name ${formatNameRef(ref)} has no history`, {
        hint: `build and publish it first: modal-image build --publish ${formatNameRef(ref)}`,
      });
    }
    return applied.map((entry) => toRecord(ref.name, ref.tag, entry.entry)).reverse();
  }

  /**
   * Copies the manifest named by `value.reference` under the tag, byte for byte, so the digest
   * stays the same. From another repository, its blobs (and for an index, its child manifests)
   * are copied first.
   */
  async publish(ref: NameRef, value: NewTagValue, expect?: ExpectedValue): Promise<TagRecord> {
    const source = this.sourceOf(value);
    const repository = this.repositoryOf(ref.name);
    const current = await this.currentDigest(repository, ref.tag);
    if (expect !== undefined && expect !== current) {
      throw expectConflict(formatNameRef(ref), expect, current);
    }
    const manifest = await source.client.getManifest(source.repository, source.digest);
    if (!manifest) {
      throw new NotFoundError(`image ${value.reference} not found`, {
        hint: "the registry has no manifest with that digest; push the image first",
      });
    }
    const sameRepository = source.client === this.client && source.repository === repository;
    if (!sameRepository) await this.copyReferenced(manifest, source, repository);

    const entry = newEntry({
      action: value.action,
      reference: this.referenceOf(repository, manifest.digest),
      digest: manifest.digest,
      ...(value.image === undefined ? {} : { image: value.image }),
    });
    const before = expect === undefined ? undefined : await this.readHistory(repository, ref.tag);
    return this.apply({
      ref,
      repository,
      entry,
      expect,
      before,
      moveTag: () => this.putExact(repository, ref.tag, manifest),
    });
  }

  /** Moves the tag back to an earlier digest from its history; never pulls or rebuilds. */
  async rollback(ref: NameRef, options: RollbackOptions = {}): Promise<TagRecord> {
    const repository = this.repositoryOf(ref.name);
    const label = formatNameRef(ref);
    const before = await this.readHistory(repository, ref.tag);
    const current = await this.currentDigest(repository, ref.tag);
    if (options.expect !== undefined && options.expect !== current) {
      throw expectConflict(label, options.expect, current);
    }

    const target = options.to ? findValue(before, options.to) : rollbackTarget(before);
    if (!target?.entry.digest) {
      const message = options.to
        ? `${label} never had the value ${options.to}`
        : `${label} has no earlier value to roll back to`;
      throw new NotFoundError(message, {
        hint: `list its values with: modal-image history ${label}`,
      });
    }

    const manifest = await this.client.getManifest(repository, target.entry.digest);
    if (!manifest) {
      throw new NotFoundError(
        `${label}: the earlier value ${target.entry.digest} is no longer in ${this.location.host}/${repository}`,
        { hint: "the registry may have garbage-collected it; publish that image again" },
      );
    }
    const entry = newEntry({
      action: "rollback",
      reference: this.referenceOf(repository, manifest.digest),
      digest: manifest.digest,
      restores: target.entry.id,
      ...(target.entry.image === undefined ? {} : { image: target.entry.image }),
    });
    // The target was chosen from what was read, so the change must apply to that same value.
    return this.apply({
      ref,
      repository,
      entry,
      expect: options.expect ?? current,
      before,
      moveTag: () => this.putExact(repository, ref.tag, manifest),
    });
  }

  /** Points the tag at the tombstone manifest, which readers treat as absent. */
  async untag(ref: NameRef, expect?: ExpectedValue): Promise<TagRecord> {
    const record = await this.resolve(ref);
    if (expect !== undefined && expect !== record.digest) {
      throw expectConflict(formatNameRef(ref), expect, record.digest);
    }
    const repository = this.repositoryOf(ref.name);
    const before = await this.readHistory(repository, ref.tag);
    const entry = newEntry({ action: "untag", reference: null, digest: null });
    await this.apply({
      ref,
      repository,
      entry,
      expect: expect === undefined ? record.digest : expect,
      before,
      moveTag: async () => {
        await this.ensureEmptyBlob(repository);
        await this.client.putManifest(
          repository,
          ref.tag,
          tombstoneManifest,
          MediaType.ociManifest,
        );
      },
    });
    return record;
  }

  /** Lists names under the registry namespace from `GET /v2/_catalog`, with their tags. */
  async names(prefix = ""): Promise<NameListing[]> {
    const namespacePrefix = this.location.namespace ? `${this.location.namespace}/` : "";
    const names = (await this.client.listRepositories())
      .filter((repository) => repository.startsWith(namespacePrefix))
      .map((repository) => repository.slice(namespacePrefix.length))
      .filter((name) => name.startsWith(prefix) && isValidName(name));
    const listings = await mapWithConcurrency(names, concurrency, async (name) => ({
      name,
      tags: await this.tagRecords(name),
    }));
    return listings
      .filter((listing) => listing.tags.length > 0)
      .sort((a, b) => compareStrings(a.name, b.name));
  }

  /**
   * Writes the history entry, then moves the registry tag. With an expected value the entry
   * records the value the history had, and it is checked after writing: when another writer's
   * entry came first and changed the value, this entry did not apply and the tag is not moved.
   */
  private async apply(change: Change): Promise<TagRecord> {
    const { ref, repository, entry, expect, before } = change;
    const written: LogEntry =
      expect === undefined ? entry : { ...entry, expect: valueOf(before?.current) };
    await this.writeEntry(repository, ref.tag, written);
    if (expect !== undefined) {
      const after = await this.readHistory(repository, ref.tag);
      if (after.rejected.has(entry.id)) {
        throw expectConflict(formatNameRef(ref), expect, valueOf(after.rejected.get(entry.id)));
      }
    }
    // NOTE: the registry has no conditional tag update, so another machine's PUT can land between
    // the check above and this PUT. The tag then keeps whichever PUT came last, even where the
    // history orders the two entries the other way. History order follows each writer's clock, so
    // an entry written later with an earlier time can also reject, after the fact, an entry whose
    // writer already moved the tag.
    await change.moveTag();
    return toRecord(ref.name, ref.tag, written);
  }

  private async tagRecords(name: string): Promise<TagRecord[]> {
    const repository = this.repositoryOf(name);
    const repositoryTags = await this.client.listTags(repository);
    const visible = repositoryTags.filter((tag) => !tag.startsWith(reservedTagPrefix));
    const records = await mapWithConcurrency(visible, concurrency, async (tag) => {
      const digest = await this.currentDigest(repository, tag);
      if (digest === null) return undefined;
      return this.describe(repository, { name, tag }, digest, repositoryTags);
    });
    return records
      .filter((record): record is TagRecord => record !== undefined)
      .sort((a, b) => b.publishedAt.localeCompare(a.publishedAt) || a.tag.localeCompare(b.tag));
  }

  /**
   * Builds the record for a tag's current digest, with the time, action and author of the newest
   * history entry that set that digest. Entries are read newest first, a few at a time.
   */
  private async describe(
    repository: string,
    ref: NameRef,
    digest: string,
    repositoryTags: readonly string[],
  ): Promise<TagRecord> {
    const reference = this.referenceOf(repository, digest);
    const tags = historyTagsOf(repositoryTags, ref.tag);
    for (let end = tags.length; end > 0; end -= concurrency) {
      const batch = tags.slice(Math.max(0, end - concurrency), end);
      const entries = await this.readEntries(repository, ref.tag, batch);
      const match = entries.findLast(
        (entry) => entry.action !== "untag" && entry.digest === digest,
      );
      if (match) return { ...toRecord(ref.name, ref.tag, match), reference };
    }
    // NOTE: a tag moved outside this tool (for example by `docker push`) has no history entry,
    // so its record has an empty publishedAt, host and user.
    return {
      name: ref.name,
      tag: ref.tag,
      reference,
      digest,
      publishedAt: "",
      action: "publish",
      host: "",
      user: "",
    };
  }

  private async readHistory(repository: string, tag: string): Promise<Replay> {
    const tags = historyTagsOf(await this.client.listTags(repository), tag);
    return replay(await this.readEntries(repository, tag, tags));
  }

  /** Reads history entries in the order of `historyTags`, skipping any that are gone or invalid. */
  private async readEntries(
    repository: string,
    tag: string,
    historyTags: readonly string[],
  ): Promise<LogEntry[]> {
    const entries = await mapWithConcurrency(historyTags, concurrency, async (historyTag) => {
      const key = `${repository}:${historyTag}`;
      if (this.entries.has(key)) return this.entries.get(key);
      const manifest = await this.client.getManifest(repository, historyTag);
      const entry = manifest ? parseHistoryManifest(manifest.bytes, tag) : undefined;
      if (manifest) this.entries.set(key, entry);
      return entry;
    });
    return entries.filter((entry): entry is LogEntry => entry !== undefined);
  }

  private async writeEntry(repository: string, tag: string, entry: LogEntry): Promise<void> {
    await this.ensureEmptyBlob(repository);
    const bytes = historyManifest(tag, entry);
    const historyTagName = historyTag(tag, entry);
    await this.client.putManifest(repository, historyTagName, bytes, MediaType.ociManifest);
    this.entries.set(`${repository}:${historyTagName}`, entry);
  }

  /** Uploads the `{}` blob that history and tombstone manifests point at, once per repository. */
  private async ensureEmptyBlob(repository: string): Promise<void> {
    if (this.repositoriesWithEmptyBlob.has(repository)) return;
    if (!(await this.client.hasBlob(repository, emptyDescriptor.digest))) {
      await this.client.uploadBlob(repository, emptyDescriptor.digest, emptyBlob);
    }
    this.repositoriesWithEmptyBlob.add(repository);
  }

  /** Copies the blobs and child manifests a manifest refers to, so the registry accepts it. */
  private async copyReferenced(
    manifest: ManifestContent,
    source: BlobSource,
    repository: string,
  ): Promise<void> {
    const references = manifestReferences(manifest.bytes, manifest.mediaType);
    for (const child of references.manifests) {
      if (await this.client.headManifest(repository, child.digest)) continue;
      const childManifest = await source.client.getManifest(source.repository, child.digest);
      if (!childManifest) {
        throw new OperationError(
          `registry ${source.client.host}: manifest ${child.digest} listed in index ${manifest.digest} is missing from ${source.repository}`,
          { hint: "push the complete multi-platform image again" },
        );
      }
      await this.copyReferenced(childManifest, source, repository);
      await this.putExact(repository, child.digest, childManifest);
    }
    const blobs = [...new Map(references.blobs.map((blob) => [blob.digest, blob])).values()];
    await mapWithConcurrency(blobs, concurrency, (blob) =>
      this.client.copyBlob(repository, blob, source),
    );
  }

  /** Puts manifest bytes unchanged and checks that the registry stored the same digest. */
  private async putExact(
    repository: string,
    reference: string,
    manifest: ManifestContent,
  ): Promise<void> {
    const stored = await this.client.putManifest(
      repository,
      reference,
      manifest.bytes,
      manifest.mediaType,
    );
    if (stored !== manifest.digest) {
      throw new OperationError(
        `registry ${this.location.host} stored ${repository}:${reference} as ${stored}, not ${manifest.digest}`,
        { hint: "the registry rewrote the manifest; use a registry that stores manifests as sent" },
      );
    }
  }

  /** Returns the tag's digest, or null when the tag is missing or points at the tombstone. */
  private async currentDigest(repository: string, tag: string): Promise<string | null> {
    const head = await this.client.headManifest(repository, tag);
    if (!head || head.digest === tombstoneDigest) return null;
    return head.digest;
  }

  private sourceOf(value: NewTagValue): BlobSource & { digest: string } {
    const pinned = parsePinnedReference(value.reference);
    if (!pinned?.repository) {
      throw new UsageError(
        `the registry index needs a pushed image, not the local image ID ${value.reference}`,
        {
          hint: "push the image first (modal-image build --publish pushes it), then publish REPOSITORY@sha256:...",
        },
      );
    }
    if (pinned.digest !== value.digest) {
      throw new UsageError(
        `reference ${value.reference} does not match the digest ${value.digest}`,
      );
    }
    const parsed = parseImageReference(pinned.repository);
    if (!parsed) throw new UsageError(`invalid image reference ${value.reference}`);
    // NOTE: the Docker Hub mapping follows Docker's rules but no test reaches Docker Hub.
    const host = parsed.domain ?? dockerHubApiHost;
    const hub = dockerHubHosts.has(host);
    const repository = hub && !parsed.path.includes("/") ? `library/${parsed.path}` : parsed.path;
    return {
      client: this.clientFor(hub ? dockerHubApiHost : host),
      repository,
      digest: pinned.digest,
    };
  }

  private clientFor(host: string): RegistryClient {
    if (host === this.location.host) return this.client;
    let client = this.otherClients.get(host);
    if (!client) {
      client = new RegistryClient(host, { env: this.env, ...this.options });
      this.otherClients.set(host, client);
    }
    return client;
  }

  /** Returns the repository path on the host, checking the full name's length. */
  private repositoryOf(name: string): string {
    repositoryFor(this.location, name);
    return this.location.namespace ? `${this.location.namespace}/${name}` : name;
  }

  private referenceOf(repository: string, digest: string): string {
    return `${this.location.host}/${repository}@${digest}`;
  }

  private registryLabel(): string {
    const { host, namespace } = this.location;
    return namespace ? `${host}/${namespace}` : host;
  }
}

function newEntry(
  fields: Pick<LogEntry, "action" | "reference" | "digest" | "image" | "restores">,
): LogEntry {
  return {
    id: randomBytes(12).toString("hex"),
    ...fields,
    at: nextTime().toISOString(),
    host: os.hostname(),
    user: os.userInfo().username,
  };
}

let lastTimeMs = 0;

/** Returns the current time, at least 1 ms after the last call, so one process orders its own entries. */
function nextTime(): Date {
  lastTimeMs = Math.max(Date.now(), lastTimeMs + 1);
  return new Date(lastTimeMs);
}
