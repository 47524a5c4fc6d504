import { BlockList, isIP } from "node:net";
import type { DaemonInfo } from "../docker/daemon-info.js";
import { findRegistryAuth, dockerConfigPath, type CredentialSource } from "../docker/auth.js";
import type { RegistryLocation } from "../names.js";
import { parseChallenges } from "../registry/auth.js";
import {
  describeCause,
  hostnameOf,
  insecureRegistriesVariable,
  isTimeout,
  registryBaseUrl,
  requestLogged,
  type HttpResponse,
} from "../registry/http.js";
import { checkTimeoutMs, failedCheck, type DoctorCheck } from "./check.js";

/** The result of the registry check, which the credentials and index checks use. */
export interface RegistryProbe {
  location: RegistryLocation;
  /** The status of an unauthenticated `GET /v2/`: 200, or 401 when a login is required. */
  status: 200 | 401;
}

// Node's error codes for a certificate that does not verify, from its TLS layer.
const certificateErrorRe = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS/;

function connectionFix(host: string, url: URL, cause: string): string {
  if (certificateErrorRe.test(cause)) {
    return `trust the registry's CA: NODE_EXTRA_CA_CERTS=ca.crt for modal-image and /etc/docker/certs.d/${host}/ca.crt for the daemon`;
  }
  if (url.protocol === "https:" && /EPROTO|wrong version number|packet length/i.test(cause)) {
    return `the registry may not speak TLS; list ${host} in ${insecureRegistriesVariable} and in the daemon's insecure-registries`;
  }
  return `check that the registry is running and reachable at ${url.origin}`;
}

/** Returns whether the daemon reaches `host` over plain HTTP, following its insecure-registries rules. */
export function daemonTreatsAsInsecure(host: string, daemon: DaemonInfo): boolean {
  if (daemon.insecureRegistryHosts.includes(host)) return true;
  const hostname = hostnameOf(host);
  // The daemon resolves a name; localhost is the only one whose address is certain here.
  const address = hostname === "localhost" ? "127.0.0.1" : hostname;
  const family = isIP(address);
  if (family === 0) return false;
  const blocks = new BlockList();
  for (const cidr of daemon.insecureRegistryCidrs) {
    const [network, prefix] = cidr.split("/");
    const cidrFamily = isIP(network ?? "");
    if (cidrFamily === 0 || prefix === undefined) continue;
    blocks.addSubnet(network!, Number(prefix), cidrFamily === 4 ? "ipv4" : "ipv6");
  }
  return blocks.check(address, family === 4 ? "ipv4" : "ipv6");
}

function loginDescription(response: HttpResponse): string {
  if (response.status === 200) return "no login required";
  const challenge = parseChallenges(response.headers.get("www-authenticate") ?? "")[0];
  if (!challenge) return "login required";
  const realm = challenge.params.realm ? ` realm ${challenge.params.realm}` : "";
  return `login required: ${challenge.scheme}${realm}`;
}

/**
 * Sends an unauthenticated `GET /v2/` to the registry over the scheme modal-image uses for it.
 * A 200 or 401 response means that an OCI registry is there. With the daemon's settings, it also checks that
 * the daemon, which pushes, uses plain HTTP where modal-image does. `daemon` is awaited only
 * after the request, so that a daemon and a registry that both hang cost one time limit.
 */
export async function checkRegistry(
  location: RegistryLocation | undefined,
  env: NodeJS.ProcessEnv,
  daemonInfo: Promise<DaemonInfo | undefined>,
): Promise<{ check: DoctorCheck; probe: RegistryProbe | undefined }> {
  if (!location) {
    const finding =
      "no registry set (config, MODAL_IMAGE_REGISTRY or --registry): images stay in the local daemon and names resolve to image IDs";
    return { check: { check: "registry", status: "skip", finding }, probe: undefined };
  }
  const { host } = location;
  const url = new URL("/v2/", registryBaseUrl(host, env));
  const plainHttp = url.protocol === "http:";
  const details: Record<string, unknown> = { registry: host, url: url.href, plainHttp };

  let response: HttpResponse;
  try {
    response = await requestLogged(`registry ${host}`, url, {
      signal: AbortSignal.timeout(checkTimeoutMs),
      followRedirects: false,
    });
    response.discard();
  } catch (error) {
    const timedOut = isTimeout(error);
    const cause = timedOut ? `timed out after ${checkTimeoutMs / 1000} s` : describeCause(error);
    const finding = `GET ${url.href} failed: ${cause}`;
    const check = failedCheck(
      "registry",
      new Error(finding),
      connectionFix(host, url, cause),
      details,
    );
    return { check, probe: undefined };
  }

  details.status = response.status;
  details.apiVersion = response.headers.get("docker-distribution-api-version");
  if (response.status !== 200 && response.status !== 401) {
    const check: DoctorCheck = {
      check: "registry",
      status: "fail",
      finding: `GET ${url.href} returned HTTP ${response.status}, not 200 or 401`,
      fix: `check that ${host} is an OCI registry and that the registry setting names its host and port`,
      details,
    };
    return { check, probe: undefined };
  }

  const probe: RegistryProbe = { location, status: response.status };
  const scheme = plainHttp ? "plain HTTP" : "HTTPS";
  const finding = `GET ${url.href} returned ${response.status} (${loginDescription(response)}) over ${scheme}`;
  const daemon = await daemonInfo;
  const daemonInsecure = daemon ? daemonTreatsAsInsecure(host, daemon) : undefined;
  if (daemonInsecure !== undefined) details.daemonPlainHttp = daemonInsecure;
  if (plainHttp && daemonInsecure === false) {
    const check: DoctorCheck = {
      check: "registry",
      status: "warn",
      finding: `${finding}, but the Docker daemon pushes to it over HTTPS`,
      fix: `add "${host}" to "insecure-registries" in the daemon's daemon.json and restart the daemon`,
      details,
    };
    return { check, probe };
  }
  return { check: { check: "registry", status: "ok", finding, details }, probe };
}

function describeSource(source: CredentialSource): string {
  const helper = source.helper ? ` (${source.helper})` : "";
  return `${source.kind}${helper} in ${source.file}`;
}

/**
 * Looks up the registry's credentials in the Docker config and sends `GET /v2/` with them, as a
 * push would authenticate. Reports the source, never the credentials.
 */
export async function checkCredentials(
  probe: RegistryProbe | undefined,
  registryCheck: DoctorCheck,
  env: NodeJS.ProcessEnv,
): Promise<DoctorCheck> {
  if (!probe) {
    const finding =
      registryCheck.status === "skip" ? "no registry set" : "the registry is not reachable";
    return { check: "credentials", status: "skip", finding };
  }
  const { host } = probe.location;
  const file = dockerConfigPath(env);
  let found: Awaited<ReturnType<typeof findRegistryAuth>>;
  try {
    found = await findRegistryAuth(host, env);
  } catch (error) {
    return failedCheck("credentials", error, `fix ${file}, or log in again: docker login ${host}`, {
      dockerConfig: file,
    });
  }

  if (!found) {
    const details = { dockerConfig: file, source: null };
    if (probe.status === 200) {
      const finding = `no credentials for ${host} in ${file}, and the registry requires none`;
      return { check: "credentials", status: "ok", finding, details };
    }
    return {
      check: "credentials",
      status: "fail",
      finding: `the registry requires a login, and ${file} has no credentials for ${host}`,
      fix: `log in with: docker login ${host} (or set DOCKER_CONFIG to the directory whose config.json has them)`,
      details,
    };
  }

  const source = describeSource(found.source);
  const details = {
    dockerConfig: file,
    source: found.source.kind,
    helper: found.source.helper ?? null,
  };
  if (probe.status === 200) {
    const finding = `credentials from ${source}; the registry requires no login, so they were not tried`;
    return { check: "credentials", status: "ok", finding, details };
  }
  const { RegistryClient } = await import("../registry/client.js");
  const client = new RegistryClient(host, { env, requestTimeoutMs: checkTimeoutMs });
  try {
    await client.checkApi();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      check: "credentials",
      status: "fail",
      finding: `login with the credentials from ${source} failed: ${reason}`,
      fix: `check the credentials, or log in again with: docker login ${host}`,
      details,
    };
  }
  const finding = `the registry accepted the credentials from ${source}`;
  return { check: "credentials", status: "ok", finding, details };
}
