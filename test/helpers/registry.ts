/** Reads from a test registry over the distribution API, bypassing the CLI under test. */

const manifestTypes = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

function authHeader(credentials?: { username: string; password: string }): Record<string, string> {
  if (!credentials) return {};
  const token = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
  return { authorization: `Basic ${token}` };
}

/** Returns the `Docker-Content-Digest` the registry reports for a tag or digest, or undefined on 404. */
export async function manifestDigest(
  registry: string,
  repository: string,
  reference: string,
  credentials?: { username: string; password: string },
): Promise<string | undefined> {
  const response = await fetch(`http://${registry}/v2/${repository}/manifests/${reference}`, {
    method: "HEAD",
    headers: { accept: manifestTypes, ...authHeader(credentials) },
  });
  if (response.status === 404) return undefined;
  if (!response.ok)
    throw new Error(`HEAD manifest ${repository}:${reference}: HTTP ${response.status}`);
  return response.headers.get("docker-content-digest") ?? undefined;
}

/** Lists a repository's tags, or an empty list when the repository does not exist. */
export async function listTags(
  registry: string,
  repository: string,
  credentials?: { username: string; password: string },
): Promise<string[]> {
  const response = await fetch(`http://${registry}/v2/${repository}/tags/list`, {
    headers: authHeader(credentials),
  });
  if (response.status === 404) return [];
  if (!response.ok) throw new Error(`GET tags ${repository}: HTTP ${response.status}`);
  const body = (await response.json()) as { tags: string[] | null };
  return [...(body.tags ?? [])].sort();
}
