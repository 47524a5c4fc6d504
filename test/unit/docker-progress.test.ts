import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { OperationError } from "../../src/errors.js";
import {
  BuildError,
  BuildProgress,
  auxString,
  daemonErrorText,
  formatStep,
  parseJsonLines,
  stepOutputLineCount,
  toStatusEvent,
  type BuildEvent,
  type DaemonMessage,
} from "../../src/docker/progress.js";

/** Yields each chunk as it is, the way a stream delivers its chunks. */
function chunksOf(chunks: readonly (string | Uint8Array)[]): AsyncIterable<string | Uint8Array> {
  return Readable.from(chunks);
}

async function parseAll(chunks: readonly (string | Uint8Array)[]): Promise<DaemonMessage[]> {
  const messages: DaemonMessage[] = [];
  for await (const message of parseJsonLines(chunksOf(chunks))) messages.push(message);
  return messages;
}

/** Feeds messages to a BuildProgress and returns its events and its result or error. */
function runBuild(messages: readonly DaemonMessage[]): {
  events: BuildEvent[];
  imageId?: string;
  error?: unknown;
} {
  const events: BuildEvent[] = [];
  const progress = new BuildProgress((event) => events.push(event));
  try {
    for (const message of messages) progress.handle(message);
    return { events, imageId: progress.finish().imageId };
  } catch (error) {
    return { events, error };
  }
}

const imageId = `sha256:${"a".repeat(64)}`;
const umlaut = Buffer.from('{"stream":"ü"}\n');

describe("parseJsonLines", () => {
  const cases: Array<{ name: string; chunks: (string | Uint8Array)[]; expected: DaemonMessage[] }> =
    [
      {
        name: "one object per chunk",
        chunks: ['{"stream":"a"}\n', '{"stream":"b"}\n'],
        expected: [{ stream: "a" }, { stream: "b" }],
      },
      {
        name: "object split across chunks",
        chunks: ['{"str', 'eam":"a"', "}\n"],
        expected: [{ stream: "a" }],
      },
      {
        name: "several objects in one chunk",
        chunks: ['{"stream":"a"}\n{"status":"b"}\n{"aux":{"ID":"c"}}\n'],
        expected: [{ stream: "a" }, { status: "b" }, { aux: { ID: "c" } }],
      },
      {
        name: "split and merged together",
        chunks: ['{"stream":"a"}\n{"sta', 'tus":"b"}\n{"stream"', ':"c"}\n'],
        expected: [{ stream: "a" }, { status: "b" }, { stream: "c" }],
      },
      {
        name: "CRLF line endings",
        chunks: ['{"stream":"a"}\r\n{"stream":"b"}\r\n'],
        expected: [{ stream: "a" }, { stream: "b" }],
      },
      {
        name: "blank lines",
        chunks: ['\n{"stream":"a"}\n\n\r\n'],
        expected: [{ stream: "a" }],
      },
      {
        name: "last line without newline",
        chunks: ['{"stream":"a"}\n{"stream":"b"}'],
        expected: [{ stream: "a" }, { stream: "b" }],
      },
      {
        name: "UTF-8 character split across chunks",
        chunks: [umlaut.subarray(0, 12), umlaut.subarray(12)],
        expected: [{ stream: "ü" }],
      },
      {
        name: "byte chunks",
        chunks: [Buffer.from('{"stream":"a"}\n{"stream":'), Buffer.from('"b"}\n')],
        expected: [{ stream: "a" }, { stream: "b" }],
      },
      { name: "empty stream", chunks: [], expected: [] },
    ];

  for (const { name, chunks, expected } of cases) {
    it(name, async () => {
      expect(await parseAll(chunks)).toEqual(expected);
    });
  }

  const invalid: Array<{ name: string; chunks: string[]; quoted: string; before: number }> = [
    { name: "non-JSON line", chunks: ["not json\n"], quoted: "not json", before: 0 },
    { name: "JSON number", chunks: ["42\n"], quoted: "42", before: 0 },
    {
      name: "JSON array",
      chunks: ['[{"stream":"a"}]\n'],
      quoted: '[{\\"stream\\":\\"a\\"}]',
      before: 0,
    },
    {
      name: "garbage after valid lines",
      chunks: ['{"stream":"a"}\n{"stream":"b"}\n', "<html>502 Bad Gateway</html>\n"],
      quoted: "<html>502 Bad Gateway</html>",
      before: 2,
    },
    {
      name: "truncated last line",
      chunks: ['{"stream":"a"}\n{"stream":'],
      quoted: '{\\"stream\\":',
      before: 1,
    },
  ];

  for (const { name, chunks, quoted, before } of invalid) {
    it(`rejects ${name}`, async () => {
      const seen: DaemonMessage[] = [];
      const consume = async () => {
        for await (const message of parseJsonLines(chunksOf(chunks))) seen.push(message);
      };
      const error = await consume().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(OperationError);
      expect((error as Error).message).toContain(quoted);
      expect(seen).toHaveLength(before);
    });
  }

  it("shortens a long invalid line in the error", async () => {
    const error = await parseAll([`${"x".repeat(5000)}\n`]).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message.length).toBeLessThan(400);
  });
});

describe("daemonErrorText", () => {
  const cases: Array<{ name: string; message: DaemonMessage; expected: string | undefined }> = [
    { name: "no error", message: { stream: "ok\n" }, expected: undefined },
    {
      name: "error with errorDetail",
      message: { errorDetail: { code: 1, message: "detail text" }, error: "error text" },
      expected: "detail text",
    },
    { name: "error only", message: { error: "error text" }, expected: "error text" },
    {
      name: "errorDetail only",
      message: { errorDetail: { message: "detail text" } },
      expected: "detail text",
    },
    {
      name: "errorDetail without message",
      message: { errorDetail: {}, error: "error text" },
      expected: "error text",
    },
  ];

  for (const { name, message, expected } of cases) {
    it(name, () => {
      expect(daemonErrorText(message)).toBe(expected);
    });
  }

  it("reports an error object with no text", () => {
    expect(daemonErrorText({ errorDetail: { code: 5 } })).toContain('"code":5');
  });
});

describe("toStatusEvent and auxString", () => {
  it("reads status with layer progress", () => {
    const message = { status: "Pushing", id: "abc", progressDetail: { current: 5, total: 10 } };
    expect(toStatusEvent(message)).toEqual({
      type: "status",
      text: "Pushing",
      id: "abc",
      current: 5,
      total: 10,
    });
  });

  it("reads status without progress", () => {
    expect(toStatusEvent({ status: "Preparing", progressDetail: {} })).toEqual({
      type: "status",
      text: "Preparing",
    });
  });

  it("ignores a message without status", () => {
    expect(toStatusEvent({ stream: "x" })).toBeUndefined();
  });

  it("reads the push digest from aux", () => {
    const message = { progressDetail: {}, aux: { Tag: "t1", Digest: "sha256:abc", Size: 528 } };
    expect(auxString(message, "Digest")).toBe("sha256:abc");
  });

  it("ignores aux that is not an object", () => {
    expect(auxString({ aux: "sha256:abc" }, "Digest")).toBeUndefined();
  });
});

// Messages as Engine 20.10's classic builder sends them for a three-instruction Dockerfile.
const successfulBuild: DaemonMessage[] = [
  { stream: "Step 1/3 : FROM busybox:latest" },
  { stream: "\n" },
  { stream: " ---\u003e 053f014095bf\n" },
  { stream: "Step 2/3 : RUN echo hello; echo err \u003e\u00262" },
  { stream: "\n" },
  { stream: " ---\u003e Running in 1b5ded6827b5\n" },
  { stream: "hello\n" },
  { stream: "\u001b[91merr\n\u001b[0m" },
  { stream: "Removing intermediate container 1b5ded6827b5\n" },
  { stream: " ---\u003e f95be29c6b91\n" },
  { stream: "Step 3/3 : LABEL a=b" },
  { stream: "\n" },
  { aux: { ID: imageId } },
  { stream: "Successfully built aaaaaaaaaaaa\n" },
];

describe("BuildProgress", () => {
  it("reports steps, output and the image ID", () => {
    const { events, imageId: builtId, error } = runBuild(successfulBuild);
    expect(error).toBeUndefined();
    expect(builtId).toBe(imageId);
    expect(events.filter((event) => event.type === "step")).toEqual([
      { type: "step", index: 1, total: 3, instruction: "FROM busybox:latest" },
      { type: "step", index: 2, total: 3, instruction: "RUN echo hello; echo err >&2" },
      { type: "step", index: 3, total: 3, instruction: "LABEL a=b" },
    ]);
    const output = events.flatMap((event) => (event.type === "output" ? [event.text] : []));
    expect(output).toContain("hello");
    expect(output).toContain("err");
    expect(output).toContain("Removing intermediate container 1b5ded6827b5");
    expect(output).toContain("Successfully built aaaaaaaaaaaa");
  });

  it("emits output text in arrival order", () => {
    const { events } = runBuild(successfulBuild);
    const kinds = events.map((event) =>
      event.type === "step" ? `step ${event.index}` : event.type,
    );
    expect(kinds.slice(0, 4)).toEqual(["step 1", "output", "step 2", "output"]);
  });

  it("passes status lines through", () => {
    const { events } = runBuild([
      { status: "Pulling from library/busybox", id: "latest" },
      { aux: { ID: imageId } },
    ]);
    expect(events).toEqual([
      { type: "status", text: "Pulling from library/busybox", id: "latest" },
    ]);
  });

  const failures: Array<{ name: string; messages: DaemonMessage[]; text: string }> = [
    {
      name: "error with errorDetail",
      messages: [{ errorDetail: { code: 3, message: "code 3 text" }, error: "code 3 text" }],
      text: "code 3 text",
    },
    {
      name: "error without errorDetail",
      messages: [{ error: "plain error" }],
      text: "plain error",
    },
    {
      name: "errorDetail without error",
      messages: [{ errorDetail: { message: "detail only" } }],
      text: "detail only",
    },
    {
      name: "error after an image ID",
      messages: [{ aux: { ID: imageId } }, { stream: "Successfully built x\n" }, { error: "late" }],
      text: "late",
    },
  ];

  for (const { name, messages, text } of failures) {
    it(`fails on ${name}`, () => {
      const { error, imageId: builtId } = runBuild(messages);
      expect(builtId).toBeUndefined();
      expect(error).toBeInstanceOf(BuildError);
      expect((error as BuildError).message).toBe(`build failed: ${text}`);
      expect((error as BuildError).step).toBeUndefined();
    });
  }

  it("names the failing step and keeps its output", () => {
    const daemonText =
      "The command '/bin/sh -c sh -c 'echo out; exit 3'' returned a non-zero code: 3";
    const { error } = runBuild([
      ...successfulBuild.slice(0, 10),
      { stream: "Step 3/4 : RUN sh -c 'echo out; exit 3'" },
      { stream: "\n" },
      { stream: " ---\u003e Running in 7eb06c5ee57c\n" },
      { stream: "out\n" },
      { stream: "\u001b[91mbad\n\u001b[0m" },
      { stream: "Removing intermediate container 7eb06c5ee57c\n" },
      { errorDetail: { code: 3, message: daemonText }, error: daemonText },
    ]);
    expect(error).toBeInstanceOf(BuildError);
    const buildError = error as BuildError;
    expect(buildError.step).toEqual({
      index: 3,
      total: 4,
      instruction: "RUN sh -c 'echo out; exit 3'",
    });
    expect(buildError.message).toBe(
      `build failed at step 3/4: RUN sh -c 'echo out; exit 3': ${daemonText}`,
    );
    expect(buildError.stepOutput).toEqual(["out", "bad"]);
    expect(buildError.exitCode).toBe(1);
  });

  it("keeps the partial last line in the step output", () => {
    const { error } = runBuild([
      { stream: "Step 1/1 : RUN x\n" },
      { stream: "no newline" },
      { error: "failed" },
    ]);
    expect((error as BuildError).stepOutput).toEqual(["no newline"]);
  });

  it(`keeps only the last ${stepOutputLineCount} output lines`, () => {
    const lines = Array.from({ length: 30 }, (_, index) => ({ stream: `line ${index}\n` }));
    const { error } = runBuild([{ stream: "Step 1/1 : RUN x\n" }, ...lines, { error: "failed" }]);
    const stepOutput = (error as BuildError).stepOutput;
    expect(stepOutput).toHaveLength(stepOutputLineCount);
    expect(stepOutput[0]).toBe("line 10");
    expect(stepOutput.at(-1)).toBe("line 29");
  });

  it("keeps the text after the last carriage return", () => {
    const { error } = runBuild([
      { stream: "Step 1/1 : RUN x\n" },
      { stream: "10%\r50%\r100%\n" },
      { error: "failed" },
    ]);
    expect((error as BuildError).stepOutput).toEqual(["100%"]);
  });

  it("starts the step output afresh at each step", () => {
    const { error } = runBuild([
      { stream: "Step 1/2 : RUN a\n" },
      { stream: "from step 1\n" },
      { stream: "Step 2/2 : RUN b\n" },
      { stream: "from step 2\n" },
      { error: "failed" },
    ]);
    expect((error as BuildError).stepOutput).toEqual(["from step 2"]);
  });

  it("fails when the stream ends without an image ID", () => {
    const { error } = runBuild(successfulBuild.filter((message) => !("aux" in message)));
    expect(error).toBeInstanceOf(OperationError);
    expect(error).not.toBeInstanceOf(BuildError);
    expect((error as Error).message).toContain("without an image ID");
  });

  it("fails on an empty stream", () => {
    expect(runBuild([]).error).toBeInstanceOf(OperationError);
  });

  it("tracks the running step's container", () => {
    const progress = new BuildProgress();
    expect(progress.runningContainer).toBeUndefined();
    progress.handle({ stream: "Step 2/3 : RUN sleep 300\n" });
    progress.handle({ stream: " ---> Running in 5f3b2c1d9a8e\n" });
    expect(progress.runningContainer).toBe("5f3b2c1d9a8e");
    progress.handle({ stream: "output of the step\n" });
    expect(progress.runningContainer).toBe("5f3b2c1d9a8e");
    progress.handle({ stream: "Removing intermediate container 5f3b2c1d9a8e\n" });
    expect(progress.runningContainer).toBeUndefined();
  });

  it("ignores Running in without an ID", () => {
    const progress = new BuildProgress();
    progress.handle({ stream: "Step 1/1 : RUN echo ' ---> Running in abc'\n" });
    progress.handle({ stream: " ---> Running in abc\n" });
    expect(progress.runningContainer).toBeUndefined();
  });
});

describe("formatStep", () => {
  it("formats a short instruction", () => {
    expect(formatStep({ index: 3, total: 7, instruction: "RUN make" })).toBe("step 3/7: RUN make");
  });

  it("shortens a long instruction", () => {
    const formatted = formatStep({ index: 1, total: 1, instruction: `RUN ${"x".repeat(200)}` });
    expect(formatted.length).toBeLessThan(100);
    expect(formatted.endsWith("...")).toBe(true);
  });
});

describe("BuildError hint", () => {
  const step = { index: 2, total: 3, instruction: "RUN apt-get install -y nope" };

  it("names a package apt cannot find", () => {
    const error = new BuildError("exit code 100", step, ["E: Unable to locate package nope"]);

    expect(error.hint).toMatch(/^Debian has no package named nope: fix the name in aptInstall/);
  });

  it("names a package pip cannot find", () => {
    const output = ["ERROR: No matching distribution found for nopkg==9"];

    const error = new BuildError("exit code 1", step, output);

    expect(error.hint).toMatch(/has no release of nopkg==9/);
  });

  it("points at the output otherwise", () => {
    expect(new BuildError("exit code 2", step, ["boom"]).hint).toMatch(/last output above/);
    expect(new BuildError("exit code 2", step, []).hint).toBe(
      "fix that step in the config, then build again",
    );
  });
});
