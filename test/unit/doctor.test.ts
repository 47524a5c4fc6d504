import { describe, expect, it } from "vitest";
import type { DaemonInfo } from "../../src/docker/daemon-info.js";
import { dockerfileBaseImages } from "../../src/doctor/daemon-check.js";
import { daemonTreatsAsInsecure } from "../../src/doctor/registry-check.js";

describe("dockerfileBaseImages", () => {
  const cases: Array<[string, string, string[]]> = [
    ["one FROM", "FROM debian:bookworm-slim\nRUN true\n", ["debian:bookworm-slim"]],
    ["lowercase and platform", "from --platform=linux/amd64 alpine:3", ["alpine:3"]],
    ["scratch", "FROM scratch\nCOPY a /a", []],
    [
      "earlier stage",
      "FROM golang:1.22 AS build\nRUN go build\nFROM build AS test\nFROM busybox\nCOPY --from=build /x /x",
      ["golang:1.22", "busybox"],
    ],
    ["ARG reference", "ARG BASE=debian\nFROM ${BASE}\n", []],
    ["CRLF line ends", "FROM busybox:latest\r\nRUN true\r\n", ["busybox:latest"]],
  ];

  it.each(cases)("%s", (_, text, expected) => {
    expect(dockerfileBaseImages(text)).toEqual(expected);
  });
});

describe("daemonTreatsAsInsecure", () => {
  const daemon: DaemonInfo = {
    version: "20.10.24",
    apiVersion: "1.41",
    os: "linux",
    arch: "amd64",
    builderVersion: "",
    insecureRegistryCidrs: ["127.0.0.0/8", "10.1.0.0/16", "::1/128"],
    insecureRegistryHosts: ["registry.internal:5000"],
  };

  const cases: Array<[string, boolean]> = [
    ["127.0.0.1:5000", true],
    ["127.9.9.9", true],
    ["localhost:5000", true],
    ["10.1.2.3:5000", true],
    ["10.2.0.1:5000", false],
    ["[::1]:5000", true],
    ["registry.internal:5000", true],
    ["registry.internal:5001", false],
    ["registry.example.com", false],
  ];

  it.each(cases)("%s is insecure: %s", (host, expected) => {
    expect(daemonTreatsAsInsecure(host, daemon)).toBe(expected);
  });
});
