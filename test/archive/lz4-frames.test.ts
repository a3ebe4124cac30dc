/**
 * The LZ4 frame splitter and decompressor: frames from lz4-napi and from the lz4 command line tool,
 * split anywhere across chunks, skippable frames passed over, and every kind of damage an integrity
 * error naming the object (exit 7), never a plain Error.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { compressFrame } from 'lz4-napi';
import { decompressFrames } from '../../src/archive/lz4-frames';
import { PitrError } from '../../src/errors';

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function inflate(data: Buffer, chunkSize = 7): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const part of decompressFrames(chunks(data, chunkSize), 'segments/test')) out.push(part);
  return Buffer.concat(out);
}

function skippable(payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x184d2a53, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

const text = Buffer.from('pitr '.repeat(50_000));
const noise = randomBytes(300_000); // incompressible: blocks stored uncompressed

test('concatenated frames come back whole, whatever the chunk boundaries', async () => {
  const frames = Buffer.concat([
    await compressFrame(text),
    skippable(Buffer.from('ignored')),
    await compressFrame(noise),
    await compressFrame(Buffer.alloc(0)),
  ]);
  for (const size of [1, 7, 4096, frames.length]) expect((await inflate(frames, size)).equals(Buffer.concat([text, noise]))).toBe(true);
});

test('frames written by the lz4 command line tool (block checksums, content checksum, content size)', async () => {
  const written = execFileSync('lz4', ['-c', '-q', '--content-size', '-BD', '--no-frame-crc', '-'], { input: text });
  const checked = execFileSync('lz4', ['-c', '-q', '-BX', '-'], { input: noise });
  expect((await inflate(Buffer.concat([written, checked]), 333)).equals(Buffer.concat([text, noise]))).toBe(true);
});

describe('damage is an integrity error naming the object', () => {
  const cases: [string, () => Promise<Buffer>, RegExp][] = [
    ['not an LZ4 frame', async () => Buffer.from('PITRSEG1 is not lz4 at all'), /^segments\/test is corrupt: not an LZ4 frame \(magic 0x/],
    ['a frame cut short', async () => (await compressFrame(text)).subarray(0, 100), /^segments\/test is corrupt: truncated LZ4 stream \(100 trailing bytes\)$/],
    [
      'an unknown frame version',
      async () => {
        const frame = Buffer.from(await compressFrame(text));
        frame[4] = (frame[4] as number) & 0x3f; // version bits 00
        return frame;
      },
      /^segments\/test is corrupt: unsupported LZ4 frame version 0$/,
    ],
    [
      // damaged bytes inside a block may decompress to other bytes: the SHA-256 of the stored object catches those
      'a block whose size runs past the end',
      async () => {
        const frame = Buffer.from(await compressFrame(text));
        frame.writeUInt32LE(0x00ffffff, 7); // the first block's size, after the 7-byte frame header
        return frame;
      },
      /^segments\/test is corrupt: truncated LZ4 stream/,
    ],
  ];
  for (const [name, make, message] of cases)
    test(name, async () => {
      const error = await inflate(await make()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PitrError);
      expect((error as PitrError).kind).toBe('Integrity');
      expect((error as PitrError).message).toMatch(message);
    });
});
