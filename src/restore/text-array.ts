import { PitrError } from '../errors';
import { ByteWriter } from './byte-writer';
import { ValueKind, type RawTuple } from './raw-change';

const TEXT_OID = 25;

/**
 * A text[] statement parameter in PostgreSQL's binary array format (array_recv): a header, then per
 * element a 4-byte length (-1 for NULL) and the bytes. A pgoutput text value is framed the same way
 * (length, bytes), so each element is one copy out of the archived message: no escaping, no decoding.
 * The statement casts each element with the target column's type, as the text form was made to be.
 */
export class TextArrayBuilder {
  private readonly elements = new ByteWriter();
  private count = 0;
  private hasNull = false;
  /** Where each element starts among the elements' bytes (so that superseded ones can be left out). */
  private starts = new Int32Array(256);

  get bytes(): number {
    return this.elements.length;
  }

  /** Appends column `i` of `tuple` (text or NULL); returns the bytes it added. */
  add(tuple: RawTuple, i: number): number {
    const kind = tuple.kinds[i];
    const before = this.elements.length;
    if (this.count === this.starts.length) {
      const grown = new Int32Array(this.starts.length * 2);
      grown.set(this.starts);
      this.starts = grown;
    }
    this.starts[this.count++] = before;
    if (kind === ValueKind.Text) {
      // the 4-byte length just before the value is the element's length prefix
      this.elements.bytes(tuple.buf, (tuple.starts[i] as number) - 4, tuple.ends[i] as number);
    } else if (kind === ValueKind.Null) {
      this.hasNull = true;
      this.elements.int32(-1);
    } else if (kind === ValueKind.Binary) {
      const hex = Buffer.from(`\\x${tuple.buf.subarray(tuple.starts[i], tuple.ends[i]).toString('hex')}`, 'latin1');
      this.elements.int32(hex.length);
      this.elements.bytes(hex, 0, hex.length);
    } else {
      throw new PitrError('Integrity', `column ${i} of an archived change has no value to bind`, 'the archived change data is corrupt');
    }
    return this.elements.length - before;
  }

  /** The array parameter; elements `e` with `left[e]` set are left out. */
  toBuffer(left?: Uint8Array): Buffer {
    const header = Buffer.allocUnsafe(20);
    header.writeInt32BE(1, 0); // dimensions
    header.writeInt32BE(this.hasNull ? 1 : 0, 4);
    header.writeInt32BE(TEXT_OID, 8);
    header.writeInt32BE(this.count, 12);
    header.writeInt32BE(1, 16); // lower bound
    const array = this.count === 0 ? header : Buffer.concat([header, ...this.elements.toChunks()], 20 + this.elements.length);
    return left ? this.without(array, left) : this.count === 0 ? emptyArray() : array;
  }

  /** Moves the kept elements' bytes together, in place. */
  private without(array: Buffer, left: Uint8Array): Buffer {
    const n = this.count;
    const starts = this.starts;
    const isLeft = (e: number): boolean => e < left.length && left[e] === 1;
    let write = 20;
    let kept = 0;
    for (let e = 0; e < n;) {
      if (isLeft(e)) {
        e++;
        continue;
      }
      let end = e + 1;
      while (end < n && !isLeft(end)) end++;
      const from = 20 + (starts[e] as number);
      const to = 20 + (end < n ? (starts[end] as number) : this.elements.length);
      if (from !== write) array.copyWithin(write, from, to);
      write += to - from;
      kept += end - e;
      e = end;
    }
    if (kept === 0) return emptyArray();
    array.writeInt32BE(kept, 12);
    return array.subarray(0, write);
  }
}

/** A text[] without elements (no dimensions). */
function emptyArray(): Buffer {
  const empty = Buffer.alloc(12);
  empty.writeInt32BE(TEXT_OID, 8);
  return empty;
}
