import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { PitrError } from '../errors';

/**
 * Decompresses one Brotli stream on zlib's thread pool, a piece at a time (bounded memory). An error of
 * `source` (a checksum mismatch found as it ends) reaches the consumer before the end does; anything
 * that is not a well-formed Brotli stream fails as PitrError('Integrity') naming `name`, the object read.
 */
export async function* decompressBrotli(source: AsyncIterable<Buffer>, name: string): AsyncGenerator<Buffer> {
  // large output pieces: each one passes through the checks and a socket write of the COPY that takes it
  const decompressor = zlib.createBrotliDecompress({ chunkSize: 256 * 1024 });
  const fed = pipeline(Readable.from(source), decompressor);
  fed.catch(() => undefined);
  try {
    for await (const chunk of decompressor) yield chunk as Buffer;
    await fed;
  } catch (error) {
    if (error instanceof PitrError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new PitrError(
      'Integrity',
      `${name} is corrupt: not a well-formed Brotli stream (${message.toLowerCase()})`,
      'run "pitr verify" to list damaged objects',
    );
  } finally {
    decompressor.destroy();
  }
}
