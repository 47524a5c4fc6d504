import { Image } from "../image/image.js";
import type { Problem } from "../image/validate.js";

// Arguments come from JSON and are checked afterwards by validateImage, like those of a TS config.
/* eslint-disable @typescript-eslint/no-unsafe-argument */
type Args = any[]; // eslint-disable-line @typescript-eslint/no-explicit-any

const constructors: Record<string, (args: Args) => Image> = {
  debianSlim: (args) => Image.debianSlim(...args),
  fromRegistry: (args) => Image.fromRegistry(...(args as [string])),
  fromDockerfile: (args) => Image.fromDockerfile(...(args as [string])),
  fromName: (args) => Image.fromName(...(args as [string])),
  fromScratch: () => Image.fromScratch(),
};

const layers: Record<string, (image: Image, args: Args) => Image> = {
  aptInstall: (image, args) => image.aptInstall(...args),
  pipInstall: (image, args) => image.pipInstall(...args),
  uvPipInstall: (image, args) => image.uvPipInstall(...args),
  pipInstallFromRequirements: (image, args) =>
    image.pipInstallFromRequirements(...(args as [string])),
  runCommands: (image, args) => image.runCommands(...args),
  dockerfileCommands: (image, args) => image.dockerfileCommands(...args),
  env: (image, args) => image.env(args[0]),
  workdir: (image, args) => image.workdir(args[0]),
  entrypoint: (image, args) => image.entrypoint(args[0]),
  cmd: (image, args) => image.cmd(args[0]),
  addLocalFile: (image, args) => image.addLocalFile(...(args as [string, string])),
  addLocalDir: (image, args) => image.addLocalDir(...(args as [string, string])),
};
/* eslint-enable @typescript-eslint/no-unsafe-argument */

// Methods that take one value, which may itself be a list or an object. The JSON value is that
// argument as it is, so validation reports a wrong type instead of a silently split string.
const singleArgument = new Set([
  "env",
  "entrypoint",
  "cmd",
  "workdir",
  "debianSlim",
  "fromRegistry",
  "fromName",
]);

type Call = [method: string, value: unknown];

function argumentsOf(method: string, value: unknown): Args {
  if (value === null || value === true) return [];
  if (singleArgument.has(method)) return [value];
  return Array.isArray(value) ? (value as unknown[]) : [value];
}

/** Reads the method calls of one image: an object in key order, or an array of one-key objects. */
function readCalls(value: unknown, path: string, problems: Problem[]): Call[] | undefined {
  if (Array.isArray(value)) {
    const calls: Call[] = [];
    value.forEach((item: unknown, index) => {
      const entries = typeof item === "object" && item !== null ? Object.entries(item) : [];
      if (entries.length === 1) calls.push(entries[0]!);
      else {
        problems.push({
          path: `${path}[${index}]`,
          message: 'expected an object with one method, such as {"aptInstall": ["git"]}',
        });
      }
    });
    return calls;
  }
  if (typeof value === "object" && value !== null) return Object.entries(value);
  problems.push({
    path,
    message: 'expected an object of method calls, such as {"fromRegistry": "debian:bookworm-slim"}',
  });
  return undefined;
}

/**
 * Builds an Image from its JSON form: an object whose keys are method names in chain order,
 * or an array of one-key objects when a method is used twice. The first call is a constructor.
 */
export function imageFromJson(
  value: unknown,
  path: string,
  problems: Problem[],
): Image | undefined {
  const calls = readCalls(value, path, problems);
  if (!calls) return undefined;
  const [first, ...rest] = calls;
  const construct = first ? constructors[first[0]] : undefined;
  if (!first || !construct) {
    const names = Object.keys(constructors).join(", ");
    problems.push({ path, message: `the first method must be one of ${names}` });
    return undefined;
  }
  let image = construct(argumentsOf(first[0], first[1]));
  for (const [method, args] of rest) {
    const apply = layers[method];
    if (!apply) {
      const names = Object.keys(layers).join(", ");
      problems.push({ path: `${path}.${method}`, message: `unknown method; use one of ${names}` });
      continue;
    }
    image = apply(image, argumentsOf(method, args));
  }
  return image;
}
