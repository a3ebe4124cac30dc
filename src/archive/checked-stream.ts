import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

/** SHA-256 (hex) and size of a stream of stored bytes. */
export async function digestStream(source: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of source) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * Passes a stored object's bytes through while hashing them; once the stream ends, a digest other
 * than `expectedSha256` throws the error `mismatch` builds (before the consumer sees the end).
 */
export async function* checkedBytes(source: Readable, expectedSha256: string | undefined, mismatch: (actual: string) => Error): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  for await (const chunk of source) {
    hash.update(chunk as Buffer);
    yield chunk as Buffer;
  }
  const actual = hash.digest('hex');
  if (expectedSha256 !== undefined && actual !== expectedSha256) throw mismatch(actual);
}
