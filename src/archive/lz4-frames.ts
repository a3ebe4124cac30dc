import { decompressFrameSync } from 'lz4-napi';
import { PitrError } from '../errors';

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/**
 * Length of the LZ4 frame at the start of `data` or, while `data` holds only part of it, how many bytes
 * are needed to learn more. Follows the LZ4 frame format: header, blocks (4-byte size, high bit = stored
 * uncompressed, optional block checksum), end mark, optional content checksum. Skippable frames are
 * measured too.
 */
function frameExtent(data: Buffer, name: string): { length: number } | { atLeast: number } {
  if (data.length < 8) return { atLeast: 8 };
  const magic = data.readUInt32LE(0);
  if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
    const total = 8 + data.readUInt32LE(4);
    return data.length >= total ? { length: total } : { atLeast: total };
  }
  if (magic !== FRAME_MAGIC) throw corrupt(name, `not an LZ4 frame (magic 0x${magic.toString(16)})`);
  const flags = data[4] as number;
  if (flags >> 6 !== 1) throw corrupt(name, `unsupported LZ4 frame version ${flags >> 6}`);
  const blockChecksum = (flags & 0x10) !== 0;
  const contentSize = (flags & 0x08) !== 0;
  const contentChecksum = (flags & 0x04) !== 0;
  const dictId = (flags & 0x01) !== 0;
  let offset = 4 + 2 + (contentSize ? 8 : 0) + (dictId ? 4 : 0) + 1;
  for (;;) {
    if (data.length < offset + 4) return { atLeast: offset + 4 };
    const blockSize = data.readUInt32LE(offset);
    offset += 4;
    if (blockSize === 0) break;
    offset += (blockSize & 0x7fffffff) + (blockChecksum ? 4 : 0);
  }
  offset += contentChecksum ? 4 : 0;
  return data.length >= offset ? { length: offset } : { atLeast: offset };
}

function corrupt(name: string, problem: string): PitrError {
  return new PitrError('Integrity', `${name} is corrupt: ${problem}`, 'run "pitr verify" to list damaged objects');
}

/**
 * Decompresses a stream of concatenated LZ4 frames, one frame at a time (bounded memory). Input chunks
 * are joined only once enough have arrived to make progress. Decompression runs on the calling thread:
 * run on the thread pool, lz4-napi's per-thread allocations kept hundreds of megabytes resident.
 * Anything that is not a well-formed LZ4 stream fails as PitrError('Integrity') naming `name`, the object read.
 */
export async function* decompressFrames(source: AsyncIterable<Buffer>, name: string): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  const waiting: Buffer[] = [];
  let waitingBytes = 0;
  let needed = 8;
  for await (const chunk of source) {
    waiting.push(chunk);
    waitingBytes += chunk.length;
    if (pending.length + waitingBytes < needed) continue;
    pending = Buffer.concat(pending.length > 0 ? [pending, ...waiting] : waiting, pending.length + waitingBytes);
    waiting.length = 0;
    waitingBytes = 0;
    for (;;) {
      const extent = frameExtent(pending, name);
      if (!('length' in extent)) {
        needed = extent.atLeast;
        break;
      }
      const frame = pending.subarray(0, extent.length);
      pending = pending.subarray(extent.length);
      if (frame.readUInt32LE(0) !== FRAME_MAGIC) continue;
      let decompressed: Buffer;
      try {
        decompressed = decompressFrameSync(frame);
      } catch (error) {
        throw corrupt(name, `an LZ4 frame does not decompress (${(error as Error).message})`);
      }
      yield decompressed;
    }
  }
  if (pending.length + waitingBytes > 0) throw corrupt(name, `truncated LZ4 stream (${pending.length + waitingBytes} trailing bytes)`);
}
