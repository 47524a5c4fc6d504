import { UsageError } from "../errors.js";

const acceptedForms =
  "set DOCKER_HOST to unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT], " +
  "or unset it to use /var/run/docker.sock";

/**
 * Checks DOCKER_HOST before anything contacts the daemon, and throws a UsageError naming the
 * value and the accepted forms when it is invalid. Unset, empty and `unix://` mean the default
 * socket, as for the docker CLI. `npipe://` is accepted on Windows only.
 *
 * The rules are stricter than docker-modem 5, which reads DOCKER_HOST for dockerode. It takes
 * `banana` as `tcp://banana`, and a `tcp://` address without a port as port 80 where Docker's
 * own parser (moby `opts.DefaultHTTPPort`) uses 2375. Both are rejected here, so that neither
 * silently reaches another address.
 */
export function checkDockerHost(value: string | undefined = process.env.DOCKER_HOST): void {
  if (value === undefined || value === "") return;
  const problem = dockerHostProblem(value);
  if (problem !== undefined) {
    // A password in the URL would otherwise reach the message.
    const redacted = value.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/, "$1:[redacted]@");
    throw new UsageError(`invalid DOCKER_HOST ${JSON.stringify(redacted)}: ${problem}`, {
      hint: acceptedForms,
    });
  }
}

/** Returns what is wrong with a non-empty DOCKER_HOST value, or undefined when it is valid. */
function dockerHostProblem(value: string): string | undefined {
  const scheme = /^([a-z]+):\/\//.exec(value)?.[1];
  if (scheme === undefined) return "it has no scheme such as unix:// or tcp://";
  const rest = value.slice(scheme.length + "://".length);
  switch (scheme) {
    case "unix":
      return rest === "" || rest.startsWith("/") ? undefined : "the socket path is not absolute";
    case "npipe":
      return process.platform === "win32" ? undefined : "named pipes exist only on Windows";
    case "tcp":
      return networkAddressProblem(value, { portRequired: true });
    case "ssh":
      return networkAddressProblem(value, { portRequired: false });
    default:
      return `the scheme ${scheme}:// is not supported`;
  }
}

function networkAddressProblem(
  value: string,
  rules: { portRequired: boolean },
): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "it is not a valid URL";
  }
  if (url.hostname === "") return "the host is missing";
  if (rules.portRequired && url.port === "") return "the port is missing, such as :2375";
  if (url.pathname !== "" && url.pathname !== "/") return "it has a path after the host";
  if (url.search !== "" || url.hash !== "") return "it has a query or fragment";
  return undefined;
}
