import { describe, expect, it } from "vitest";
import { checkDockerHost } from "../../src/docker/host.js";
import { UsageError } from "../../src/errors.js";

function problemOf(value: string): UsageError {
  try {
    checkDockerHost(value);
  } catch (error) {
    if (error instanceof UsageError) return error;
    throw error;
  }
  throw new Error(`DOCKER_HOST ${JSON.stringify(value)} was accepted`);
}

describe("checkDockerHost", () => {
  it.each([
    undefined,
    "",
    "unix://",
    "unix:///var/run/docker.sock",
    "unix:///tmp/dir with space/docker.sock",
    "tcp://127.0.0.1:2375",
    "tcp://docker.example.com:2376/",
    "tcp://[::1]:2375",
    "ssh://builder@docker.example.com",
    "ssh://docker.example.com:2222",
  ])("accepts %s", (value) => {
    expect(() => checkDockerHost(value)).not.toThrow();
  });

  it.each([
    ["banana", "no scheme"],
    ["127.0.0.1:2375", "no scheme"],
    ["tcp://", "host is missing"],
    ["tcp://127.0.0.1", "port is missing"],
    ["tcp://127.0.0.1:99999", "not a valid URL"],
    ["tcp://127.0.0.1:2375/v1.41", "path"],
    ["tcp://127.0.0.1:2375?x=1", "query"],
    ["unix://docker.sock", "not absolute"],
    ["http://127.0.0.1:2375", "http:// is not supported"],
    ["fd://", "fd:// is not supported"],
    ["ssh://", "host is missing"],
  ])("rejects %s", (value, problem) => {
    const error = problemOf(value);
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(JSON.stringify(value));
    expect(error.message).toContain(problem);
    expect(error.hint).toContain("tcp://HOST:PORT");
    expect(error.hint).toContain("unix:///path/to/docker.sock");
  });

  it("rejects npipe outside Windows", () => {
    if (process.platform === "win32") {
      expect(() => checkDockerHost("npipe:////./pipe/docker_engine")).not.toThrow();
    } else {
      expect(problemOf("npipe:////./pipe/docker_engine").message).toContain("only on Windows");
    }
  });

  it("masks a password in the value", () => {
    const error = problemOf("ssh://builder:hunter2@docker.example.com/path");
    expect(error.message).not.toContain("hunter2");
    expect(error.message).toContain("ssh://builder:[redacted]@docker.example.com/path");
  });
});
