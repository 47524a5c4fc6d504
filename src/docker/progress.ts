import { StringDecoder } from "node:string_decoder";
import { OperationError } from "../errors.js";

/**
 * One object of the Engine API's JSON progress stream (build, push, pull). Fields the code reads:
 * `stream`, `status`, `id`, `progressDetail`, `aux`, `error` and `errorDetail`.
 */
export type DaemonMessage = Readonly<Record<string, unknown>>;

/** A pull- or push-like status line, such as `Pushed` for one layer or `Pulling from library/x`. */
export interface StatusEvent {
  type: "status";
  text: string;
  /** Layer ID or tag the status is about, when the daemon names one. */
  id?: string;
  /** Bytes done and expected for a layer transfer, when the daemon reports them. */
  current?: number;
  total?: number;
}

/** A Dockerfile instruction the classic builder starts, from its `Step 3/7 : RUN ...` line. */
export interface BuildStep {
  index: number;
  total: number;
  instruction: string;
}

export type BuildEvent =
  ({ type: "step" } & BuildStep) | { type: "output"; text: string } | StatusEvent;

export type PushEvent = StatusEvent;
export type PullEvent = StatusEvent;

/** Number of output lines of the failing step that a BuildError keeps. */
export const stepOutputLineCount = 20;

const maxQuotedLineLength = 200;

/** A build that the daemon reported as failed, with the step that failed and its last output. */
export class BuildError extends OperationError {
  readonly step: BuildStep | undefined;
  /** The last lines the failing step printed, oldest first, without colour codes. */
  readonly stepOutput: readonly string[];

  constructor(daemonText: string, step: BuildStep | undefined, stepOutput: readonly string[]) {
    super(
      step ? `build failed at ${formatStep(step)}: ${daemonText}` : `build failed: ${daemonText}`,
      { hint: buildFailureHint(stepOutput) },
    );
    this.step = step;
    this.stepOutput = stepOutput;
  }
}

/** Says what to do about a failed step, naming a missing package when apt or pip reports one. */
function buildFailureHint(stepOutput: readonly string[]): string {
  const output = stepOutput.join("\n");
  const apt = /Unable to locate package (\S+)/.exec(output)?.[1];
  if (apt !== undefined) {
    return `Debian has no package named ${apt}: fix the name in aptInstall (apt-cache search shows the names), then build again`;
  }
  const pip = /No matching distribution found for (\S+)/.exec(output)?.[1];
  if (pip !== undefined) {
    return `the package index has no release of ${pip} for this Python: fix the name or version, then build again`;
  }
  return stepOutput.length > 0
    ? "the step's last output above shows why it failed; fix that step in the config, then build again"
    : "fix that step in the config, then build again";
}

/** Formats a step as `step 3/7: RUN ...`, shortening long instructions. */
export function formatStep(step: BuildStep): string {
  const maxInstructionLength = 80;
  const instruction =
    step.instruction.length > maxInstructionLength
      ? `${step.instruction.slice(0, maxInstructionLength - 3)}...`
      : step.instruction;
  return `step ${step.index}/${step.total}: ${instruction}`;
}

/**
 * Parses a stream of newline-delimited JSON objects, yielding each object as soon as its line is
 * complete. Objects may be split across chunks or share one. A line that is not a JSON object
 * raises an OperationError, so no message from the daemon is silently dropped.
 */
export async function* parseJsonLines(
  source: AsyncIterable<Uint8Array | string>,
): AsyncGenerator<DaemonMessage> {
  // StringDecoder keeps a multi-byte UTF-8 character that is split across two chunks intact.
  const decoder = new StringDecoder("utf8");
  let pending = "";
  for await (const chunk of source) {
    pending += typeof chunk === "string" ? chunk : decoder.write(chunk);
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const message = parseLine(line);
      if (message) yield message;
    }
  }
  const last = parseLine(pending + decoder.end());
  if (last) yield last;
}

function parseLine(line: string): DaemonMessage | undefined {
  const trimmed = line.trim();
  if (trimmed === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    throw invalidLineError(trimmed, "is not JSON");
  }
  if (!isRecord(value)) throw invalidLineError(trimmed, "is not a JSON object");
  return value;
}

function invalidLineError(line: string, problem: string): OperationError {
  const quoted =
    line.length > maxQuotedLineLength ? `${line.slice(0, maxQuotedLineLength)}...` : line;
  return new OperationError(
    `the Docker daemon sent a progress line that ${problem}: ${JSON.stringify(quoted)}`,
    { hint: "check that DOCKER_HOST points at a Docker Engine API and not at another server" },
  );
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Returns the daemon's error text if the message reports an error, else undefined. Reads
 * `errorDetail.message` first and then `error`, which Engine 20.10 fills with the same text.
 */
export function daemonErrorText(message: DaemonMessage): string | undefined {
  const { error, errorDetail } = message;
  if (error === undefined && errorDetail === undefined) return undefined;
  if (isRecord(errorDetail) && typeof errorDetail.message === "string" && errorDetail.message) {
    return errorDetail.message;
  }
  if (typeof error === "string" && error) return error;
  // An error object with no readable text still fails the operation.
  return `unreadable error from the daemon: ${JSON.stringify({ error, errorDetail })}`;
}

/** Converts a message with a `status` field into a StatusEvent. */
export function toStatusEvent(message: DaemonMessage): StatusEvent | undefined {
  if (typeof message.status !== "string") return undefined;
  const event: StatusEvent = { type: "status", text: message.status };
  if (typeof message.id === "string") event.id = message.id;
  const detail = message.progressDetail;
  if (isRecord(detail) && typeof detail.current === "number") event.current = detail.current;
  if (isRecord(detail) && typeof detail.total === "number") event.total = detail.total;
  return event;
}

/** Reads a string field of the message's `aux` object, such as `ID` or `Digest`. */
export function auxString(message: DaemonMessage, key: string): string | undefined {
  const aux = message.aux;
  if (!isRecord(aux)) return undefined;
  const value = aux[key];
  return typeof value === "string" && value !== "" ? value : undefined;
}

const stepLinePattern = /^Step (\d+)\/(\d+) : (.*)$/;
// The classic builder wraps RUN stderr in SGR colour codes (ESC[91m ... ESC[0m) on Engine 20.10.
// eslint-disable-next-line no-control-regex
const sgrSequencePattern = /\u001b\[[0-9;]*m/g;
// Lines the builder itself prints around a step's own output, kept out of BuildError.stepOutput.
const builderChatterPattern = /^ ---> |^Removing intermediate container /;
// The builder's line naming the container it started for a RUN step.
const runningInPattern = /^ ---> Running in ([0-9a-f]{12,64})$/;

/**
 * Turns the classic builder's messages into BuildEvents and tracks the current step, its last
 * output lines and the image ID. `stream` text is split into lines, so an `output` event carries
 * one line without its newline and without colour codes.
 */
export class BuildProgress {
  private step: BuildStep | undefined;
  private stepOutput: string[] = [];
  private partialLine = "";
  private imageId: string | undefined;
  private container: string | undefined;

  constructor(private readonly onEvent: (event: BuildEvent) => void = () => {}) {}

  /** Consumes one message and throws a BuildError if it reports an error. */
  handle(message: DaemonMessage): void {
    const errorText = daemonErrorText(message);
    if (errorText !== undefined) {
      this.flushPartialLine();
      throw new BuildError(errorText, this.step, [...this.stepOutput]);
    }

    const imageId = auxString(message, "ID");
    if (imageId) this.imageId = imageId;

    if (typeof message.stream === "string") this.addText(message.stream);

    const status = toStatusEvent(message);
    if (status) this.onEvent(status);
  }

  /**
   * The ID (or 12-digit prefix) of the container of the RUN step in progress, from the builder's
   * `Running in` line, until the builder reports that it removed it.
   */
  get runningContainer(): string | undefined {
    return this.container;
  }

  /** Flushes the last partial line and returns the image ID, which a successful build reports. */
  finish(): { imageId: string } {
    this.flushPartialLine();
    if (!this.imageId) {
      throw new OperationError("the build stream ended without an image ID", {
        hint: "the daemon may have stopped during the build; check it with `docker info` and retry",
      });
    }
    return { imageId: this.imageId };
  }

  private addText(text: string): void {
    const lines = (this.partialLine + text).split("\n");
    this.partialLine = lines.pop() ?? "";
    for (const line of lines) this.addLine(line);
  }

  private flushPartialLine(): void {
    if (this.partialLine === "") return;
    const line = this.partialLine;
    this.partialLine = "";
    this.addLine(line);
  }

  private addLine(rawLine: string): void {
    const line = rawLine.replace(sgrSequencePattern, "").replace(/\r$/, "");
    const match = stepLinePattern.exec(line);
    if (match) {
      this.step = { index: Number(match[1]), total: Number(match[2]), instruction: match[3] ?? "" };
      this.stepOutput = [];
      this.onEvent({ type: "step", ...this.step });
      return;
    }

    // A blank remainder here is the reset code after red stderr text, not output.
    if (line === "" && rawLine !== "") return;
    this.onEvent({ type: "output", text: line });
    const running = runningInPattern.exec(line);
    if (running) this.container = running[1];
    else if (line.startsWith("Removing intermediate container ")) this.container = undefined;
    if (builderChatterPattern.test(line)) return;
    // Keep only what a terminal would show after carriage-return progress updates.
    this.stepOutput.push(line.slice(line.lastIndexOf("\r") + 1));
    if (this.stepOutput.length > stepOutputLineCount) this.stepOutput.shift();
  }
}
