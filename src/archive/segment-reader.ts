import type { Readable } from 'node:stream';
import { PitrError } from '../errors';
import { checkedBytes } from './checked-stream';
import { decompressFrames } from './lz4-frames';
import { RECORD_HEADER_BYTES, SEGMENT_MAGIC } from './segment-format';

/**
 * Yields the records (raw pgoutput messages) of a stored segment, verifying the SHA-256 of the stored
 * bytes against the manifest at the end of the stream. Callers that must not act on a corrupt segment
 * buffer the records (or verify first) before applying them.
 */
export async function* readSegmentRecords(stored: Readable, name: string, expectedSha256?: string): AsyncGenerator<Buffer> {
  for await (const frame of readSegmentFrames(stored, name, expectedSha256)) {
    for (let i = 0; i < frame.count; i++) yield frame.data.subarray(frame.starts[i], frame.ends[i]);
  }
}

/** The records of one decompressed frame: record i is `data[starts[i], ends[i])`, no Buffer made per record. */
export interface RecordFrame {
  data: Buffer;
  starts: Int32Array;
  ends: Int32Array;
  count: number;
}

/** The same records, located frame by frame: one await per frame rather than per record. */
export async function* readSegmentFrames(stored: Readable, name: string, expectedSha256?: string): AsyncGenerator<RecordFrame> {
  let pending: Buffer = Buffer.alloc(0);
  let sawMagic = false;
  try {
    for await (const raw of decompressFrames(
      checkedBytes(
        stored,
        expectedSha256,
        (actual) =>
          new PitrError(
            'Integrity',
            `segment ${name} is corrupt: sha256 ${actual} does not match its manifest (${expectedSha256})`,
            'run "pitr verify" to list damaged objects',
          ),
      ),
      `segment ${name}`,
    )) {
      pending = pending.length === 0 ? raw : Buffer.concat([pending, raw]);
      let offset = 0;
      if (!sawMagic) {
        if (pending.length < SEGMENT_MAGIC.length) continue;
        if (!pending.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC))
          throw new PitrError('Integrity', `segment ${name} does not start with the pitr segment magic`);
        sawMagic = true;
        offset = SEGMENT_MAGIC.length;
      }
      let starts = new Int32Array(4096);
      let ends = new Int32Array(4096);
      let count = 0;
      while (pending.length - offset >= RECORD_HEADER_BYTES) {
        const length = pending.readUInt32BE(offset);
        if (pending.length - offset - RECORD_HEADER_BYTES < length) break;
        if (count === starts.length) {
          const moreStarts = new Int32Array(count * 2);
          moreStarts.set(starts);
          starts = moreStarts;
          const moreEnds = new Int32Array(count * 2);
          moreEnds.set(ends);
          ends = moreEnds;
        }
        starts[count] = offset + RECORD_HEADER_BYTES;
        ends[count] = offset + RECORD_HEADER_BYTES + length;
        count++;
        offset += RECORD_HEADER_BYTES + length;
      }
      const data = pending;
      pending = pending.subarray(offset);
      if (count > 0) yield { data, starts, ends, count };
    }
  } catch (error) {
    if (error instanceof PitrError) throw error;
    throw new PitrError('Integrity', `segment ${name} cannot be decoded: ${(error as Error).message}`, 'run "pitr verify" to list damaged objects', {
      cause: error,
    });
  }
  if (pending.length > 0 || !sawMagic) throw new PitrError('Integrity', `segment ${name} is truncated`, 'run "pitr verify" to list damaged objects');
}
