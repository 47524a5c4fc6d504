import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/errors.js";
import { toJsonEvent } from "../../src/output/progress-json.js";
import { chooseProgressMode, type ProgressSettings } from "../../src/output/progress.js";

// Vitest's stderr is not a terminal, so auto resolves to step lines.
const modes: Array<[string, ProgressSettings, string]> = [
  ["default", {}, "steps"],
  ["auto", { progress: "auto" }, "steps"],
  ["plain", { progress: "plain" }, "plain"],
  ["json", { progress: "json" }, "json"],
  ["verbose", { verbose: true }, "plain"],
  ["verbose with plain", { verbose: true, progress: "plain" }, "plain"],
  ["quiet", { quiet: true }, "quiet"],
  ["quiet with auto", { quiet: true, progress: "auto" }, "quiet"],
  ["env json", { env: { MODAL_IMAGE_PROGRESS: "json" } }, "json"],
  ["option over env", { progress: "plain", env: { MODAL_IMAGE_PROGRESS: "json" } }, "plain"],
  ["quiet over env", { quiet: true, env: { MODAL_IMAGE_PROGRESS: "json" } }, "quiet"],
  ["empty env", { env: { MODAL_IMAGE_PROGRESS: "" } }, "steps"],
  ["option over invalid env", { progress: "plain", env: { MODAL_IMAGE_PROGRESS: "x" } }, "plain"],
  ["verbose over invalid env", { verbose: true, env: { MODAL_IMAGE_PROGRESS: "x" } }, "plain"],
  ["quiet over invalid env", { quiet: true, env: { MODAL_IMAGE_PROGRESS: "x" } }, "quiet"],
];

const invalid: Array<[string, ProgressSettings, RegExp]> = [
  ["unknown value", { progress: "tty" }, /invalid --progress value "tty"/],
  [
    "unknown env value",
    { env: { MODAL_IMAGE_PROGRESS: "fancy" } },
    /invalid MODAL_IMAGE_PROGRESS "fancy"/,
  ],
  [
    "verbose with json",
    { verbose: true, progress: "json" },
    /--verbose conflicts with --progress json/,
  ],
  [
    "quiet with plain",
    { quiet: true, progress: "plain" },
    /--quiet conflicts with --progress plain/,
  ],
  ["quiet with verbose", { quiet: true, verbose: true }, /--quiet conflicts with --verbose/],
];

describe("chooseProgressMode", () => {
  it.each(modes)("%s", (_, settings, expected) => {
    expect(chooseProgressMode({ env: {}, ...settings })).toBe(expected);
  });

  it.each(invalid)("rejects %s", (_, settings, message) => {
    const choose = () => chooseProgressMode({ env: {}, ...settings });
    expect(choose).toThrow(UsageError);
    expect(choose).toThrow(message);
  });

  it("lists the choices in the hint", () => {
    try {
      chooseProgressMode({ progress: "xml", env: {} });
      expect.unreachable();
    } catch (error) {
      expect((error as UsageError).hint).toBe("use one of auto, plain, json");
    }
  });
});

describe("toJsonEvent", () => {
  const now = new Date("2026-01-02T03:04:05.000Z");
  const time = "2026-01-02T03:04:05.000Z";

  it("flattens a build step", () => {
    const event = toJsonEvent(
      {
        type: "build",
        image: "app",
        event: { type: "step", index: 2, total: 5, instruction: "RUN x" },
      },
      now,
    );
    expect(event).toEqual({
      time,
      type: "step",
      image: "app",
      index: 2,
      total: 5,
      instruction: "RUN x",
    });
  });

  it("keeps build output text", () => {
    const event = toJsonEvent(
      { type: "build", image: "app", event: { type: "output", text: "hi" } },
      now,
    );
    expect(event).toEqual({ time, type: "output", image: "app", text: "hi" });
  });

  it("names the operation of a status", () => {
    const push = toJsonEvent(
      {
        type: "push",
        image: "app",
        event: { type: "status", text: "Pushing", id: "abc", current: 1, total: 9 },
      },
      now,
    );
    expect(push).toEqual({
      time,
      type: "status",
      image: "app",
      operation: "push",
      text: "Pushing",
      id: "abc",
      current: 1,
      total: 9,
    });
    const pull = toJsonEvent(
      { type: "pull", image: "x:latest", event: { type: "status", text: "Pulled" } },
      now,
    );
    expect(pull).toEqual({
      time,
      type: "status",
      image: "x:latest",
      operation: "pull",
      text: "Pulled",
    });
  });

  it("keeps phase and done fields", () => {
    const phase = toJsonEvent({ type: "phase", image: "app", phase: "push", detail: "r/app" }, now);
    expect(phase).toEqual({ time, type: "phase", image: "app", phase: "push", detail: "r/app" });
    const done = toJsonEvent({ type: "done", image: "app", reference: "r/app@sha256:1" }, now);
    expect(done).toEqual({ time, type: "done", image: "app", reference: "r/app@sha256:1" });
  });
});
