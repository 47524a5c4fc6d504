/**
 * Build secrets: values a `runCommands` step needs (a token, a `.npmrc`) that must never enter
 * the image, its history, the Dockerfile, the logs or the definition hash in clear. A secret is
 * plain data, so a JSON config writes the same object that `Secret.fromEnv` returns.
 */

/** The source of a secret's value, and the variable and file that the command reads it from. */
export interface SecretSpec {
  /**
   * The secret's ID: the file `/run/secrets/<id>` in the command's container, unless `target`
   * is set. Defaults to the `fromEnv` variable name; a `fromFile` secret needs one.
   */
  id?: string;
  /** Name of an environment variable of the machine that runs `modal-image build`. */
  fromEnv?: string;
  /** Path of a local file, relative to the config file's directory. */
  fromFile?: string;
  /**
   * Environment variable that contains the value while the command runs. Defaults to the
   * `fromEnv` variable name; `false` exposes the value as a file only. A `fromFile` secret has
   * none unless one is named.
   */
  env?: string | false;
  /** Absolute path of the file in the command's container. @default `/run/secrets/<id>` */
  target?: string;
}

/** Options of `Secret.fromEnv` and `Secret.fromFile`. */
export type SecretOptions = Pick<SecretSpec, "env" | "target">;

/** Options of `runCommands`, given as its last argument. */
export interface RunCommandsOptions {
  /** Secrets the commands of this call can read; later steps cannot. */
  secrets?: readonly SecretSpec[];
}

export const Secret = {
  /**
   * Returns a secret whose value is the environment variable `variable` of the machine that builds.
   * The command reads it from `$variable` and from the file `/run/secrets/<variable>`.
   */
  fromEnv(variable: string, options: SecretOptions & { id?: string } = {}): SecretSpec {
    return Object.freeze({ ...options, fromEnv: variable });
  },
  /**
   * Returns a secret whose value is a local file's content. The command reads it from the file
   * `/run/secrets/<id>`, or at `options.target`, and from `$<options.env>` when that is set.
   */
  fromFile(id: string, path: string, options: SecretOptions = {}): SecretSpec {
    return Object.freeze({ ...options, id, fromFile: path });
  },
};

/** A secret with its defaults applied, as the Dockerfile and the build use it. */
export interface SecretMount {
  id: string;
  source: { kind: "env"; variable: string } | { kind: "file"; path: string };
  /** The environment variable the command gets the value in, if any. */
  env: string | undefined;
  target: string;
}

export const secretsDir = "/run/secrets";

/** Applies the defaults to a validated spec. */
export function toSecretMount(spec: SecretSpec): SecretMount {
  const id = spec.id ?? spec.fromEnv!;
  const env = spec.env === false ? undefined : (spec.env ?? spec.fromEnv);
  return {
    id,
    source:
      spec.fromEnv !== undefined
        ? { kind: "env", variable: spec.fromEnv }
        : { kind: "file", path: spec.fromFile! },
    env,
    target: spec.target ?? `${secretsDir}/${id}`,
  };
}

/** Secret IDs: a letter or `_`, then letters, digits, `_`, `.` and `-`; at most 128 characters. */
export const secretIdRe = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
export const secretIdGrammar = "[A-Za-z_][A-Za-z0-9_.-]*, at most 128 characters";
/** Names of environment variables. */
export const envNameRe = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * Targets: an absolute path of plain characters, because the mount option is a comma-separated
 * list inside a whitespace-separated flag, and neither can be quoted by the Dockerfile parser.
 */
export const secretTargetRe = /^(?:\/[A-Za-z0-9_.+@~-]+)+$/;

/** The keys a secret object may have. */
export const secretKeys = ["id", "fromEnv", "fromFile", "env", "target"] as const;

/**
 * The largest value BuildKit accepts from a session, its `MaxSecretSize` of 500 KiB.
 */
export const maxSecretBytes = 500 * 1024;
