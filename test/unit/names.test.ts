import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/errors.js";
import {
  parseImageReference,
  parseNameRef,
  parsePinnedReference,
  parseRegistry,
  repositoryFor,
} from "../../src/names.js";

const digest = `sha256:${"a".repeat(64)}`;

describe("parseNameRef", () => {
  it.each([
    ["analytics-runtime", { name: "analytics-runtime", tag: "latest" }],
    ["analytics-runtime:v1", { name: "analytics-runtime", tag: "v1" }],
    ["team/app:2024.01_rc-1", { name: "team/app", tag: "2024.01_rc-1" }],
    ["a__b.c--d/e:x_", { name: "a__b.c--d/e", tag: "x_" }],
    [`a:${"T".repeat(128)}`, { name: "a", tag: "T".repeat(128) }],
  ])("accepts %s", (input, expected) => {
    expect(parseNameRef(input)).toEqual(expected);
  });

  it.each([
    "",
    "Analytics",
    "app:",
    ":tag",
    "app:-tag",
    "app:_reserved",
    "app:.tag",
    `app:${"t".repeat(129)}`,
    "app/",
    "/app",
    "a//b",
    "a..b",
    "a-",
    "-a",
    "a:b:c",
    "app;rm -rf /",
    "app$(id)",
    "app\n",
    "app tag",
    "a".repeat(256),
  ])("rejects %j with exit 2", (input) => {
    expect(() => parseNameRef(input)).toThrow(UsageError);
  });

  it("names the grammar in the error", () => {
    try {
      parseNameRef("Bad_Name");
      expect.unreachable();
    } catch (error) {
      expect((error as UsageError).message).toContain('"Bad_Name"');
      expect((error as UsageError).hint).toContain("lowercase");
      expect((error as UsageError).exitCode).toBe(2);
    }
  });
});

describe("parseRegistry", () => {
  it.each([
    ["127.0.0.1:5000", { host: "127.0.0.1:5000", namespace: "" }],
    ["127.0.0.1:5000/team", { host: "127.0.0.1:5000", namespace: "team" }],
    ["localhost:5000/a/b/", { host: "localhost:5000", namespace: "a/b" }],
    ["registry.example.com", { host: "registry.example.com", namespace: "" }],
    ["[::1]:5000/x", { host: "[::1]:5000", namespace: "x" }],
  ])("parses %s", (input, expected) => {
    expect(parseRegistry(input)).toEqual(expected);
  });

  it.each(["", "http://127.0.0.1:5000", "host:port", "127.0.0.1:5000/Team", "a b", "host/$(id)"])(
    "rejects %j",
    (input) => {
      expect(() => parseRegistry(input)).toThrow(UsageError);
    },
  );

  it("joins repository paths", () => {
    expect(repositoryFor(parseRegistry("127.0.0.1:5000/team"), "app")).toBe(
      "127.0.0.1:5000/team/app",
    );
  });
});

describe("parseImageReference", () => {
  it.each([
    [
      "debian:bookworm-slim",
      { domain: undefined, path: "debian", tag: "bookworm-slim", digest: undefined },
    ],
    [
      "library/debian",
      { domain: undefined, path: "library/debian", tag: undefined, digest: undefined },
    ],
    ["localhost/app:1", { domain: "localhost", path: "app", tag: "1", digest: undefined }],
    [
      "127.0.0.1:5000/a/b@" + digest,
      { domain: "127.0.0.1:5000", path: "a/b", tag: undefined, digest },
    ],
    [
      "ghcr.io/astral-sh/uv:0.9.5",
      { domain: "ghcr.io", path: "astral-sh/uv", tag: "0.9.5", digest: undefined },
    ],
  ])("parses %s", (input, expected) => {
    expect(parseImageReference(input)).toEqual(expected);
  });

  it.each(["Debian", "debian:bad tag", "debian\nRUN id", "debian; id", "", "debian@sha256:short"])(
    "rejects %j",
    (input) => {
      expect(parseImageReference(input)).toBeUndefined();
    },
  );
});

describe("parsePinnedReference", () => {
  it("parses a registry reference", () => {
    expect(parsePinnedReference(`127.0.0.1:5000/app@${digest}`)).toEqual({
      repository: "127.0.0.1:5000/app",
      digest,
    });
  });

  it("parses an image ID", () => {
    expect(parsePinnedReference(digest)).toEqual({ repository: undefined, digest });
  });

  it.each(["app:latest", `app:1@${digest}`, "app@sha256:xyz", "sha256:abc"])(
    "rejects %s",
    (input) => {
      expect(parsePinnedReference(input)).toBeUndefined();
    },
  );
});
