import { execa } from "execa";

/** Runs the docker CLI, independent of the code under test, and returns stdout. */
export async function docker(args: readonly string[]): Promise<string> {
  const result = await execa("docker", [...args], { stripFinalNewline: true });
  return result.stdout;
}

/** Removes every local image of the repositories, ignoring ones already gone. */
export async function removeImages(...repositories: string[]): Promise<void> {
  for (const repository of repositories) {
    const ids = await docker(["image", "ls", "-q", "--no-trunc", repository]).catch(() => "");
    const unique = [...new Set(ids.split("\n").filter(Boolean))];
    if (unique.length > 0)
      await execa("docker", ["image", "rm", "-f", ...unique], { reject: false });
  }
}

export interface ImageConfig {
  Env: string[];
  WorkingDir: string;
  Cmd: string[] | null;
  Entrypoint: string[] | null;
  Labels: Record<string, string> | null;
}

/** Returns the image's Config block from `docker image inspect`. */
export async function imageConfig(reference: string): Promise<ImageConfig> {
  const text = await docker(["image", "inspect", "--format", "{{json .Config}}", reference]);
  return JSON.parse(text) as ImageConfig;
}
