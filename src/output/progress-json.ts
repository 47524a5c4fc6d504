import type { StatusEvent } from "../docker/progress.js";
import type { ProgressEvent } from "./progress.js";

/**
 * One line of `--progress json`. Every object has `time` (ISO 8601, UTC) and `type`. The
 * README documents each shape; a new field may be added, but none is renamed or removed.
 */
export type JsonProgressEvent = { time: string } & (
  | { type: "phase"; image: string; phase: string; detail?: string }
  | { type: "step"; image: string; index: number; total: number; instruction: string }
  | { type: "output"; image: string; text: string }
  | ({ type: "status"; image: string; operation: "build" | "push" | "pull" } & StatusFields)
  | { type: "done"; image: string; reference: string }
);

type StatusFields = Omit<StatusEvent, "type">;

function statusFields(event: StatusEvent): StatusFields {
  return {
    text: event.text,
    ...(event.id === undefined ? {} : { id: event.id }),
    ...(event.current === undefined ? {} : { current: event.current }),
    ...(event.total === undefined ? {} : { total: event.total }),
  };
}

/** Flattens a progress event into the documented JSON line shape. */
export function toJsonEvent(event: ProgressEvent, now = new Date()): JsonProgressEvent {
  const time = now.toISOString();
  switch (event.type) {
    case "phase":
      return {
        time,
        type: "phase",
        image: event.image,
        phase: event.phase,
        ...(event.detail === undefined ? {} : { detail: event.detail }),
      };
    case "build": {
      const inner = event.event;
      if (inner.type === "step") {
        const { index, total, instruction } = inner;
        return { time, type: "step", image: event.image, index, total, instruction };
      }
      if (inner.type === "output") {
        return { time, type: "output", image: event.image, text: inner.text };
      }
      return {
        time,
        type: "status",
        image: event.image,
        operation: "build",
        ...statusFields(inner),
      };
    }
    case "push":
    case "pull":
      return {
        time,
        type: "status",
        image: event.image,
        operation: event.type,
        ...statusFields(event.event),
      };
    case "done":
      return { time, type: "done", image: event.image, reference: event.reference };
  }
}
