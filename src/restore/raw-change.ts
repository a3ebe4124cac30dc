import { Tag } from '../archive/segment-format';
import { PitrError } from '../errors';

/**
 * Replay reads Insert, Update and Delete messages without decoding their values: each column is
 * located in the message's bytes (kind, start, end) and copied from there into COPY rows or binary
 * array parameters. Values therefore reach the target byte for byte as the source's output function
 * wrote them, and no JavaScript string is made per value.
 */
export const ValueKind = {
  Null: 0x6e, // n
  Unchanged: 0x75, // u: an unchanged TOASTed value the server did not resend
  Text: 0x74, // t
  Binary: 0x62, // b
} as const;

const NEW_TUPLE = 0x4e; // N
const KEY_TUPLE = 0x4b; // K
const OLD_TUPLE = 0x4f; // O

function corrupt(message: string): PitrError {
  return new PitrError('Integrity', `cannot decode pgoutput message: ${message}`, 'the archived change data is corrupt');
}

/** One TupleData, located in its message: column i is `buf[starts[i], ends[i])` with kind `kinds[i]`. */
export class RawTuple {
  buf: Buffer = Buffer.alloc(0);
  count = 0;
  kinds = new Uint8Array(32);
  starts = new Int32Array(32);
  ends = new Int32Array(32);
  /** Where the TupleData lies in `buf`: [from, to). */
  from = 0;
  to = 0;

  /** Locates the TupleData at `offset` (the message ends at `length`); returns the offset after it. */
  read(buf: Buffer, offset: number, length: number): number {
    if (offset + 2 > length) throw corrupt('tuple truncated reading its column count');
    const count = (buf[offset] as number) * 256 + (buf[offset + 1] as number);
    if (count > 0x7fff) throw corrupt(`negative column count`);
    this.from = offset;
    offset += 2;
    if (count > this.kinds.length) {
      this.kinds = new Uint8Array(count);
      this.starts = new Int32Array(count);
      this.ends = new Int32Array(count);
    }
    const { kinds, starts, ends } = this;
    for (let i = 0; i < count; i++) {
      if (offset >= length) throw corrupt(`tuple truncated reading column ${i}`);
      const kind = buf[offset++] as number;
      kinds[i] = kind;
      if (kind === ValueKind.Text || kind === ValueKind.Binary) {
        if (offset + 4 > length) throw corrupt(`tuple truncated reading the length of column ${i}`);
        const n = buf.readInt32BE(offset);
        offset += 4;
        if (n < 0 || offset + n > length) throw corrupt(`column ${i} has length ${n} beyond the message`);
        starts[i] = offset;
        offset += n;
        ends[i] = offset;
      } else if (kind === ValueKind.Null || kind === ValueKind.Unchanged) {
        starts[i] = offset;
        ends[i] = offset;
      } else {
        throw corrupt(`column ${i} has unknown value kind 0x${kind.toString(16)}`);
      }
    }
    this.buf = buf;
    this.count = count;
    this.to = offset;
    return offset;
  }

  /** Same kind and same bytes in column i of this tuple and column j of `other`. */
  sameValue(i: number, other: RawTuple, j: number): boolean {
    const kind = this.kinds[i];
    if (kind !== other.kinds[j]) return false;
    if (kind !== ValueKind.Text && kind !== ValueKind.Binary) return true;
    return this.buf.compare(other.buf, other.starts[j], other.ends[j], this.starts[i], this.ends[i]) === 0;
  }

  /**
   * Column i as a map key: a number when its text is a short decimal integer in canonical form (no
   * sign but a minus, no leading zero, not "-0": the usual key, cheap to hash, nothing allocated), else
   * its bytes as a latin1 string. So two texts give the same key exactly when they are the same bytes
   * ("7" and "007" of a text column differ). NULL and unchanged TOAST get markers (a key a replayed
   * update matches by is never either).
   */
  keyOf(i: number): string | number {
    const kind = this.kinds[i];
    if (kind === ValueKind.Null) return '\u0001n';
    if (kind === ValueKind.Unchanged) return '\u0001u';
    const buf = this.buf;
    const start = this.starts[i] as number;
    const end = this.ends[i] as number;
    if (end > start && end - start <= 15) {
      let at = start;
      const negative = buf[at] === 0x2d;
      if (negative) at++;
      if (buf[at] === 0x30 && (negative || at + 1 !== end)) return buf.toString('latin1', start, end); // "-0", "007"
      let n = 0;
      for (; at < end; at++) {
        const d = (buf[at] as number) - 0x30;
        if (d < 0 || d > 9) break;
        n = n * 10 + d;
      }
      if (at === end && end > start + (negative ? 1 : 0)) return negative ? -n : n;
    }
    return buf.toString('latin1', start, end);
  }
}

/** An Insert, Update or Delete message, located: `old` is valid when `oldKind` is K or O. */
export class RawChange {
  tag = 0;
  relationId = 0;
  /** 0 (no old tuple), 'K' (key columns only) or 'O' (the whole old row), as byte values. */
  oldKind = 0;
  readonly old = new RawTuple();
  readonly next = new RawTuple();

  get hasOld(): boolean {
    return this.oldKind !== 0;
  }

  /** Reads one I, U or D message, `buf[start, end)`; the tuples point into `buf` until the next read. */
  read(buf: Buffer, start = 0, end = buf.length): this {
    if (end - start < 6) throw corrupt('change message truncated');
    const tag = buf[start] as number;
    this.tag = tag;
    this.relationId = buf.readUInt32BE(start + 1);
    this.oldKind = 0;
    let offset = start + 5;
    const marker = buf[offset++] as number;
    if (tag === Tag.Insert) {
      if (marker !== NEW_TUPLE) throw corrupt(`insert into relation ${this.relationId} has tuple marker 0x${marker.toString(16)}`);
      offset = this.next.read(buf, offset, end);
    } else if (tag === Tag.Update) {
      if (marker === KEY_TUPLE || marker === OLD_TUPLE) {
        this.oldKind = marker;
        offset = this.old.read(buf, offset, end);
        if (buf[offset++] !== NEW_TUPLE) throw corrupt(`update of relation ${this.relationId} lacks its new tuple`);
      } else if (marker !== NEW_TUPLE) {
        throw corrupt(`update of relation ${this.relationId} has tuple marker 0x${marker.toString(16)}`);
      }
      offset = this.next.read(buf, offset, end);
    } else if (tag === Tag.Delete) {
      if (marker !== KEY_TUPLE && marker !== OLD_TUPLE) throw corrupt(`delete from relation ${this.relationId} has tuple marker 0x${marker.toString(16)}`);
      this.oldKind = marker;
      offset = this.old.read(buf, offset, end);
    } else {
      throw corrupt(`0x${tag.toString(16)} is not a change message`);
    }
    if (offset !== end) throw corrupt(`change message of relation ${this.relationId} has ${end - offset} unexpected trailing bytes`);
    return this;
  }
}
