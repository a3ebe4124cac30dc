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
  for await (const batch of readSegmentRecordBatches(stored, name, expectedSha256)) yield* batch;
}

/** The same records, grouped by decompressed frame: one await per frame rather than per record. */
export async function* readSegmentRecordBatches(stored: Readable, name: string, expectedSha256?: string): AsyncGenerator<Buffer[]> {
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
      const records: Buffer[] = [];
      while (pending.length - offset >= RECORD_HEADER_BYTES) {
        const length = pending.readUInt32BE(offset);
        if (pending.length - offset - RECORD_HEADER_BYTES < length) break;
        records.push(pending.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length));
        offset += RECORD_HEADER_BYTES + length;
      }
      pending = pending.subarray(offset);
      if (records.length > 0) yield records;
    }
  } catch (error) {
    if (error instanceof PitrError) throw error;
    throw new PitrError('Integrity', `segment ${name} cannot be decoded: ${(error as Error).message}`, 'run "pitr verify" to list damaged objects', {
      cause: error,
    });
  }
  if (pending.length > 0 || !sawMagic) throw new PitrError('Integrity', `segment ${name} is truncated`, 'run "pitr verify" to list damaged objects');
}
