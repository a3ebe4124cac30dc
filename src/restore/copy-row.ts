import { PitrError } from '../errors';
import type { ByteWriter } from './byte-writer';
import { ValueKind, type RawTuple } from './raw-change';

const BACKSLASH = 0x5c;
const TAB = 0x09;
const NEWLINE = 0x0a;
const RETURN = 0x0d;
const NULL_MARK = Buffer.from('\\N', 'latin1');

/**
 * Appends one value in COPY's text format: the value's own text with backslash, tab, newline and
 * carriage return escaped (PostgreSQL docs, "COPY", File Formats: Text Format). The bytes are the
 * source's output-function text, so the target's input function reads back exactly that value.
 */
function writeCopyValue(out: ByteWriter, source: Buffer, start: number, end: number): void {
  let i = start;
  for (; i < end; i++) {
    const b = source[i] as number;
    if (b === BACKSLASH || b === TAB || b === NEWLINE || b === RETURN) break;
  }
  if (i === end) {
    out.bytes(source, start, end);
    return;
  }
  out.bytes(source, start, i);
  out.write(2 * (end - i), (target, at) => {
    let o = at;
    for (let j = i; j < end; j++) {
      const b = source[j] as number;
      if (b === BACKSLASH) {
        target[o++] = BACKSLASH;
        target[o++] = BACKSLASH;
      } else if (b === TAB) {
        target[o++] = BACKSLASH;
        target[o++] = 0x74; // t
      } else if (b === NEWLINE) {
        target[o++] = BACKSLASH;
        target[o++] = 0x6e; // n
      } else if (b === RETURN) {
        target[o++] = BACKSLASH;
        target[o++] = 0x72; // r
      } else {
        target[o++] = b;
      }
    }
    return o - at;
  });
}

/** Appends a tuple as one COPY text row: columns separated by tabs, NULL as \N, a newline at the end. */
export function writeCopyRow(out: ByteWriter, tuple: RawTuple): void {
  const { kinds, starts, ends, buf, count } = tuple;
  for (let i = 0; i < count; i++) {
    if (i > 0) out.byte(TAB);
    const kind = kinds[i];
    if (kind === ValueKind.Text) writeCopyValue(out, buf, starts[i] as number, ends[i] as number);
    else if (kind === ValueKind.Null) out.bytes(NULL_MARK, 0, 2);
    else if (kind === ValueKind.Binary) {
      // binary-mode values are never requested from the server; kept as bytea's hex text, like the decoder's readers
      const hex = Buffer.from(`\\x${buf.subarray(starts[i], ends[i]).toString('hex')}`, 'latin1');
      writeCopyValue(out, hex, 0, hex.length);
    } else throw new PitrError('Integrity', `column ${i} of an inserted row has no value`, 'the archived change data is corrupt');
  }
  out.byte(NEWLINE);
}
