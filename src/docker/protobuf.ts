/**
 * The small part of the protocol buffers wire format that the BuildKit session and progress
 * stream need: varints, length-delimited fields and skipping of everything else. Messages are
 * few and tiny, so a code generator and its runtime would be more than they are worth.
 */

/** One field of a message: its number and its raw value. */
export type ProtoField =
  | { field: number; wireType: 0; value: bigint }
  | { field: number; wireType: 2; value: Uint8Array }
  | { field: number; wireType: 1 | 5; value: Uint8Array };

export class ProtobufError extends Error {}

function readVarint(bytes: Uint8Array, start: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let offset = start; offset < bytes.length && shift < 70n; offset++) {
    const byte = bytes[offset]!;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, next: offset + 1 };
    shift += 7n;
  }
  throw new ProtobufError("truncated or overlong varint");
}

/** Splits a message into its fields, in wire order. Groups (wire types 3 and 4) are rejected. */
export function* readFields(bytes: Uint8Array): Generator<ProtoField> {
  let offset = 0;
  while (offset < bytes.length) {
    const key = readVarint(bytes, offset);
    offset = key.next;
    const field = Number(key.value >> 3n);
    const wireType = Number(key.value & 7n);
    switch (wireType) {
      case 0: {
        const varint = readVarint(bytes, offset);
        offset = varint.next;
        yield { field, wireType, value: varint.value };
        break;
      }
      case 2: {
        const length = readVarint(bytes, offset);
        const end = length.next + Number(length.value);
        if (end > bytes.length) throw new ProtobufError("truncated length-delimited field");
        yield { field, wireType, value: bytes.subarray(length.next, end) };
        offset = end;
        break;
      }
      case 1:
      case 5: {
        const end = offset + (wireType === 1 ? 8 : 4);
        if (end > bytes.length) throw new ProtobufError("truncated fixed-size field");
        yield { field, wireType, value: bytes.subarray(offset, end) };
        offset = end;
        break;
      }
      default:
        throw new ProtobufError(`unsupported wire type ${wireType}`);
    }
  }
}

const utf8 = new TextDecoder("utf-8");

export function fieldString(field: ProtoField): string {
  return field.wireType === 2 ? utf8.decode(field.value) : "";
}

export function fieldBytes(field: ProtoField): Uint8Array {
  return field.wireType === 2 ? field.value : new Uint8Array();
}

export function fieldNumber(field: ProtoField): number {
  return field.wireType === 0 ? Number(BigInt.asIntN(64, field.value)) : 0;
}

function varint(value: number | bigint): Buffer {
  let rest = BigInt(value);
  const bytes: number[] = [];
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0n);
  return Buffer.from(bytes);
}

/** Encodes a length-delimited field (string, bytes or message). */
export function encodeBytesField(field: number, value: Uint8Array | string): Buffer {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.byteLength), bytes]);
}

/** Encodes a varint field (int, enum or bool). */
export function encodeVarintField(field: number, value: number): Buffer {
  return Buffer.concat([varint(field << 3), varint(value)]);
}
