/**
 * Reads the progress stream of a BuildKit build (`POST /build?version=2`). The daemon sends
 * `{"id":"moby.buildkit.trace","aux":"<base64>"}` messages, each a protobuf
 * `moby.buildkit.v1.StatusResponse` with vertexes (steps), their logs and warnings, then
 * `{"id":"moby.image.id","aux":{"ID":"sha256:..."}}`, or an `error` message when the build fails.
 */
import { TextDecoder } from "node:util";
import { jsonArray } from "../dockerfile/quote.js";
import { OperationError } from "../errors.js";
import {
  BuildError,
  auxString,
  daemonErrorText,
  stepOutputLineCount,
  type BuildEvent,
  type BuildStep,
  type DaemonMessage,
} from "./progress.js";
import { fieldBytes, fieldNumber, fieldString, readFields, type ProtoField } from "./protobuf.js";

export interface Vertex {
  digest: string;
  name: string;
  cached: boolean;
  started: boolean;
  completed: boolean;
  error: string;
}

export interface VertexLog {
  vertex: string;
  /** 1 for stdout, 2 for stderr. */
  stream: number;
  data: Uint8Array;
}

export interface VertexWarning {
  vertex: string;
  text: string;
}

export interface SolveStatus {
  vertexes: Vertex[];
  logs: VertexLog[];
  warnings: VertexWarning[];
}

function decodeVertex(bytes: Uint8Array): Vertex {
  const vertex: Vertex = {
    digest: "",
    name: "",
    cached: false,
    started: false,
    completed: false,
    error: "",
  };
  for (const field of readFields(bytes)) {
    if (field.field === 1) vertex.digest = fieldString(field);
    else if (field.field === 3) vertex.name = fieldString(field);
    else if (field.field === 4) vertex.cached = fieldNumber(field) !== 0;
    else if (field.field === 5) vertex.started = isSetTimestamp(field);
    else if (field.field === 6) vertex.completed = isSetTimestamp(field);
    else if (field.field === 7) vertex.error = fieldString(field);
  }
  return vertex;
}

// A Timestamp field is present only when set; its zero value is still a set message.
function isSetTimestamp(field: ProtoField): boolean {
  return field.wireType === 2;
}

function decodeLog(bytes: Uint8Array): VertexLog {
  const log: VertexLog = { vertex: "", stream: 1, data: new Uint8Array() };
  for (const field of readFields(bytes)) {
    if (field.field === 1) log.vertex = fieldString(field);
    else if (field.field === 3) log.stream = fieldNumber(field);
    else if (field.field === 4) log.data = fieldBytes(field);
  }
  return log;
}

function decodeWarning(bytes: Uint8Array): VertexWarning {
  const warning: VertexWarning = { vertex: "", text: "" };
  for (const field of readFields(bytes)) {
    if (field.field === 1) warning.vertex = fieldString(field);
    else if (field.field === 3) warning.text = fieldString(field);
  }
  return warning;
}

/** Decodes one `moby.buildkit.v1.StatusResponse`. Statuses (transfer progress) are skipped. */
export function decodeSolveStatus(bytes: Uint8Array): SolveStatus {
  const status: SolveStatus = { vertexes: [], logs: [], warnings: [] };
  for (const field of readFields(bytes)) {
    if (field.field === 1) status.vertexes.push(decodeVertex(fieldBytes(field)));
    else if (field.field === 3) status.logs.push(decodeLog(fieldBytes(field)));
    else if (field.field === 4) status.warnings.push(decodeWarning(fieldBytes(field)));
  }
  return status;
}

// `[2/5] RUN ...` or, in a multi-stage build, `[stage-1 2/5] RUN ...`.
const stepNamePattern = /^\[(?:[^\]\s]+ )?(\d+)\/(\d+)\] ([\s\S]*)$/;
// eslint-disable-next-line no-control-regex
const sgrSequencePattern = /\u001b\[[0-9;]*m/g;

// The lines that src/dockerfile/generate.ts puts before a command to export a secret.
const secretExportLine =
  /^([A-Za-z_][A-Za-z0-9_]*)="\$\(cat '[^']*' && printf x\)" \|\| exit; \1="\$\{\1%x\}"; export \1\n/;

/**
 * Shortens a RUN step's name for progress: `--mount` flags and the lines that export secrets
 * are left out, so that the summary starts with the user's own command, as the classic
 * builder's `Step N/M : RUN [...]` line does.
 */
export function summarizeInstruction(instruction: string): string {
  const flags = /^RUN ((?:--mount=\S+ )+)/.exec(instruction);
  if (!flags) return instruction;
  const rest = instruction.slice(flags[0].length);
  let argv: unknown;
  try {
    argv = JSON.parse(rest);
  } catch {
    return `RUN ${rest}`;
  }
  if (!Array.isArray(argv) || argv.length !== 3 || typeof argv[2] !== "string") {
    return `RUN ${rest}`;
  }
  let script = argv[2];
  for (let match = secretExportLine.exec(script); match; match = secretExportLine.exec(script)) {
    script = script.slice(match[0].length);
  }
  return `RUN ${jsonArray([String(argv[0]), String(argv[1]), script])}`;
}

interface VertexState {
  step: BuildStep | undefined;
  name: string;
  announced: boolean;
  partialLine: string;
  output: string[];
  error: string;
  decoder: TextDecoder;
}

/**
 * Turns BuildKit's messages into the same BuildEvents as the classic builder's: a `step` event
 * when a Dockerfile step starts, `output` events with whole lines of its output, and a
 * BuildError naming the failing step with its last output lines. Every text passes through
 * `redact` before it leaves, so that a secret a command prints is masked.
 */
export class BuildKitProgress {
  private readonly vertexes = new Map<string, VertexState>();
  private failed: VertexState | undefined;
  private imageId: string | undefined;

  constructor(
    private readonly onEvent: (event: BuildEvent) => void = () => {},
    private readonly redact: (text: string) => string = (text) => text,
  ) {}

  /** Consumes one message and throws a BuildError if it reports an error. */
  handle(message: DaemonMessage): void {
    const errorText = daemonErrorText(message);
    if (errorText !== undefined) {
      for (const state of this.vertexes.values()) this.flush(state);
      const failed = this.failed;
      throw new BuildError(this.redact(errorText), failed?.step, failed ? [...failed.output] : []);
    }
    if (message.id === "moby.image.id") {
      this.imageId = auxString(message, "ID") ?? this.imageId;
      return;
    }
    if (message.id === "moby.buildkit.trace") {
      if (typeof message.aux !== "string") return;
      let status: SolveStatus;
      try {
        status = decodeSolveStatus(Buffer.from(message.aux, "base64"));
      } catch (error) {
        throw new OperationError(
          `the Docker daemon sent a BuildKit progress message that cannot be decoded: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
      this.apply(status);
      return;
    }
    // Engine 20.10 also sends plain `stream` text, such as the image ID line.
    if (typeof message.stream === "string" && message.stream.trim() !== "") {
      this.onEvent({ type: "output", text: this.redact(message.stream.replace(/\n$/, "")) });
    }
  }

  /** Flushes partial lines and returns the image ID, which a successful build reports. */
  finish(): { imageId: string } {
    for (const state of this.vertexes.values()) this.flush(state);
    const failed = this.failed;
    if (!this.imageId && failed) {
      // The stream ended after a step failed but before the daemon's error message.
      throw new BuildError(this.redact(failed.error), failed.step, [...failed.output]);
    }
    if (!this.imageId) {
      throw new OperationError("the BuildKit build stream ended without an image ID", {
        hint: "the daemon may have stopped during the build; check it with `docker info` and retry",
      });
    }
    return { imageId: this.imageId };
  }

  private state(digest: string): VertexState {
    let state = this.vertexes.get(digest);
    if (!state) {
      state = {
        step: undefined,
        name: "",
        announced: false,
        partialLine: "",
        output: [],
        error: "",
        decoder: new TextDecoder("utf-8"),
      };
      this.vertexes.set(digest, state);
    }
    return state;
  }

  private apply(status: SolveStatus): void {
    for (const vertex of status.vertexes) {
      const state = this.state(vertex.digest);
      if (vertex.name && !state.name) {
        state.name = vertex.name;
        const match = stepNamePattern.exec(vertex.name);
        if (match) {
          state.step = {
            index: Number(match[1]),
            total: Number(match[2]),
            instruction: this.redact(summarizeInstruction(match[3] ?? "")),
          };
        }
      }
      if ((vertex.started || vertex.cached) && !state.announced && state.step) {
        state.announced = true;
        this.onEvent({ type: "step", ...state.step });
        if (vertex.cached) this.onEvent({ type: "output", text: "CACHED" });
      }
      if (vertex.error) {
        state.error = vertex.error;
        // The first failure is the cause, because BuildKit then cancels the vertexes beside it.
        if (!this.failed || !this.failed.step) this.failed = state;
      }
    }
    for (const log of status.logs) this.addText(this.state(log.vertex), log.data);
    for (const warning of status.warnings) {
      this.onEvent({ type: "output", text: this.redact(`WARNING: ${warning.text}`) });
    }
  }

  private addText(state: VertexState, data: Uint8Array): void {
    const lines = (state.partialLine + state.decoder.decode(data, { stream: true })).split("\n");
    state.partialLine = lines.pop() ?? "";
    for (const line of lines) this.addLine(state, line);
  }

  private flush(state: VertexState): void {
    const rest = state.partialLine + state.decoder.decode();
    state.partialLine = "";
    if (rest !== "") this.addLine(state, rest);
  }

  private addLine(state: VertexState, rawLine: string): void {
    const line = this.redact(rawLine.replace(sgrSequencePattern, "").replace(/\r$/, ""));
    this.onEvent({ type: "output", text: line });
    state.output.push(line.slice(line.lastIndexOf("\r") + 1));
    if (state.output.length > stepOutputLineCount) state.output.shift();
  }
}
