import { checkDockerHost } from "../docker/host.js";
import { NotFoundError, UsageError } from "../errors.js";
import { parseExpected, type TagRecord } from "../index-store/local.js";
import { isDigest, parseImageReference, parseNameRef, parsePinnedReference } from "../names.js";
import { openIndex, type CommandOptions } from "./options.js";

type Source =
  | { kind: "imageId"; id: string }
  | { kind: "pinned"; reference: string; repository: string; digest: string }
  | { kind: "name"; input: string };

function parseSource(input: string): Source {
  if (isDigest(input)) return { kind: "imageId", id: input };
  const pinned = parsePinnedReference(input);
  if (pinned?.repository)
    return {
      kind: "pinned",
      reference: input,
      repository: pinned.repository,
      digest: pinned.digest,
    };
  try {
    parseNameRef(input);
    return { kind: "name", input };
  } catch {
    throw new UsageError(`invalid source ${JSON.stringify(input)}`, {
      hint: "SOURCE is a name in the index (NAME[:TAG]), a pinned reference (REPOSITORY@sha256:...) or an image ID (sha256:<64 hex>)",
    });
  }
}

/** Checks that a source outside the index exists, through the daemon. */
async function checkExists(
  source: Exclude<Source, { kind: "name" }>,
  options: CommandOptions,
): Promise<void> {
  const docker = await import("../docker/client.js");
  const reference = source.kind === "imageId" ? source.id : source.reference;
  if (await docker.inspectImage(reference)) return;
  if (source.kind === "pinned") {
    const host = parseImageReference(source.repository)?.domain;
    const { resolveRegistryAuth } = await import("../docker/auth.js");
    const auth = host ? await resolveRegistryAuth(host, options.env) : undefined;
    if (await docker.inspectDistribution(reference, auth)) return;
  }
  throw new NotFoundError(`image ${reference} not found`, {
    hint:
      source.kind === "imageId"
        ? "the local daemon has no image with that ID; list images with docker images --no-trunc"
        : "the registry has no manifest with that digest; check the reference with modal-image resolve",
  });
}

/** Points `NAME[:TAG]` at an existing image without building anything. */
export async function publish(
  source: string,
  target: string,
  options: CommandOptions & { expect?: string } = {},
): Promise<TagRecord> {
  const targetRef = parseNameRef(target);
  const parsed = parseSource(source);
  const expect = parseExpected(options.expect);
  // Only a source outside the index is checked through the daemon.
  if (parsed.kind !== "name") checkDockerHost();
  const index = await openIndex(options);
  if (parsed.kind === "name") {
    const record = await index.resolve(parseNameRef(parsed.input));
    return index.publish(
      targetRef,
      {
        reference: record.reference,
        digest: record.digest,
        action: "publish",
        ...(record.image === undefined ? {} : { image: record.image }),
      },
      expect,
    );
  }
  await checkExists(parsed, options);
  const reference = parsed.kind === "imageId" ? parsed.id : parsed.reference;
  const digest = parsed.kind === "imageId" ? parsed.id : parsed.digest;
  return index.publish(targetRef, { reference, digest, action: "publish" }, expect);
}
