import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { Keyring } from './keyring';
import {
  CHUNK_BYTES,
  HEADER_BYTES,
  TAG_BYTES,
  TRAILER_BYTES,
  chunkFailure,
  newHeader,
  objectKeyFor,
  openChunk,
  parseHeader,
  plainSize,
  sealChunk,
  trailerMismatch,
  type SealedHeader,
} from './sealed-format';

/** Bytes queued in arrival order, taken from the front without copying the rest (memory: what is queued). */
class ByteQueue {
  private parts: Buffer[] = [];
  length = 0;

  push(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.parts.push(bytes);
    this.length += bytes.length;
  }

  take(count: number): Buffer {
    const out: Buffer[] = [];
    let left = count;
    while (left > 0) {
      const first = this.parts[0] as Buffer;
      if (first.length <= left) {
        out.push(first);
        this.parts.shift();
        left -= first.length;
      } else {
        out.push(first.subarray(0, left));
        this.parts[0] = first.subarray(left);
        left = 0;
      }
    }
    this.length -= count;
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }
}

/** Seals a plaintext given in pieces: `write` and `end` return the sealed bytes ready so far. */
export class ObjectSealer {
  private readonly header: SealedHeader;
  private readonly objectKey: Buffer;
  private readonly pending = new ByteQueue();
  private readonly digest: Hash = createHash('sha256');
  private index = 0;
  private started = false;
  /** The most chunks held at once (one): memory stays bounded whatever the object's size. */
  maxQueuedBytes = 0;

  constructor(
    private readonly name: string,
    keyring: Keyring,
  ) {
    ({ header: this.header, objectKey: this.objectKey } = newHeader(keyring.current.id, keyring.current.key));
  }

  write(plain: Buffer): Buffer[] {
    const out = this.start();
    this.pending.push(plain);
    this.maxQueuedBytes = Math.max(this.maxQueuedBytes, this.pending.length);
    // a full chunk is sealed once a byte after it is known: only the last chunk carries the final flag
    while (this.pending.length > CHUNK_BYTES) out.push(this.seal(this.pending.take(CHUNK_BYTES), false));
    return out;
  }

  end(): Buffer[] {
    const out = this.start();
    out.push(this.seal(this.pending.take(this.pending.length), true));
    out.push(this.digest.digest());
    return out;
  }

  private start(): Buffer[] {
    if (this.started) return [];
    this.started = true;
    this.digest.update(this.header.bytes);
    return [this.header.bytes];
  }

  private seal(plain: Buffer, final: boolean): Buffer {
    const sealed = sealChunk(this.objectKey, this.header, this.name, this.index++, final, plain);
    this.digest.update(sealed);
    return sealed;
  }
}

/**
 * Opens a sealed object given in pieces: `write` and `end` return the plaintext authenticated so far
 * (a chunk's bytes only once its tag checks). Throws Key or Integrity errors (sealed-format.ts).
 */
export class ObjectOpener {
  private readonly queue = new ByteQueue();
  private readonly digest: Hash = createHash('sha256');
  private header: SealedHeader | undefined;
  private objectKey: Buffer | undefined;
  private index = 0;
  /** The most sealed bytes held at once: about one chunk plus what one write brought. */
  maxQueuedBytes = 0;

  constructor(
    private readonly name: string,
    private readonly keyring: Keyring | undefined,
    private readonly location: string,
  ) {}

  /** The key id the object names, once its header was read. */
  get keyId(): string | undefined {
    return this.header?.keyId;
  }

  write(sealed: Buffer): Buffer[] {
    this.queue.push(sealed);
    this.maxQueuedBytes = Math.max(this.maxQueuedBytes, this.queue.length);
    const out: Buffer[] = [];
    if (!this.header) {
      if (this.queue.length < HEADER_BYTES) return out;
      const bytes = this.queue.take(HEADER_BYTES);
      this.header = parseHeader(bytes, this.name);
      this.objectKey = objectKeyFor(this.header, this.keyring, this.name, this.location);
      this.digest.update(bytes);
    }
    // a full chunk with more than a trailer after it is not the last one
    while (this.queue.length > CHUNK_BYTES + TAG_BYTES + TRAILER_BYTES) out.push(this.open(this.queue.take(CHUNK_BYTES + TAG_BYTES), false));
    return out;
  }

  end(): Buffer[] {
    if (!this.header) {
      // fewer bytes than a header: parseHeader names what is wrong
      this.header = parseHeader(this.queue.take(this.queue.length), this.name);
    }
    if (this.queue.length < TAG_BYTES + TRAILER_BYTES) throw chunkFailure(this.name, this.index); // cut short before its last chunk
    const last = this.open(this.queue.take(this.queue.length - TRAILER_BYTES), true);
    if (!this.digest.digest().equals(this.queue.take(TRAILER_BYTES))) throw trailerMismatch(this.name);
    return [last];
  }

  private open(sealed: Buffer, final: boolean): Buffer {
    this.digest.update(sealed);
    return openChunk(this.objectKey as Buffer, this.header as SealedHeader, this.name, this.index++, final, sealed);
  }
}

/** A Transform over ObjectSealer or ObjectOpener. */
export class PieceTransform extends Transform {
  constructor(private readonly pieces: { write(bytes: Buffer): Buffer[]; end(): Buffer[] }) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      for (const out of this.pieces.write(chunk)) this.push(out);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      for (const out of this.pieces.end()) this.push(out);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/** Seals a whole buffer (small objects). */
export function sealBuffer(name: string, keyring: Keyring, plain: Buffer): Buffer {
  const sealer = new ObjectSealer(name, keyring);
  return Buffer.concat([...sealer.write(plain), ...sealer.end()]);
}

/** Opens a whole sealed buffer (small objects). */
export function openBuffer(name: string, keyring: Keyring | undefined, location: string, sealed: Buffer): Buffer {
  const opener = new ObjectOpener(name, keyring, location);
  return Buffer.concat([...opener.write(sealed), ...opener.end()]);
}

/**
 * Checks a sealed object's envelope without the key: a header that checks itself, a size the layout
 * allows, and the SHA-256 of its bytes equal to the one in its trailer. `problem` says what is wrong.
 */
export async function checkEnvelope(source: AsyncIterable<unknown>, name: string): Promise<{ bytes: number; problem?: string }> {
  const digest = createHash('sha256');
  const head = new ByteQueue();
  let held = Buffer.alloc(0);
  let bytes = 0;
  for await (const piece of source) {
    const chunk = piece as Buffer;
    bytes += chunk.length;
    if (head.length < HEADER_BYTES) head.push(Buffer.from(chunk.subarray(0, HEADER_BYTES - head.length)));
    const all = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
    const cut = Math.max(0, all.length - TRAILER_BYTES);
    digest.update(all.subarray(0, cut));
    held = Buffer.from(all.subarray(cut));
  }
  try {
    parseHeader(head.take(head.length), name);
  } catch (error) {
    return { bytes, problem: (error as Error).message.replace(`object ${name} is corrupt: `, '') };
  }
  if (plainSize(bytes) === undefined) return { bytes, problem: `${bytes} bytes is not the size of an encrypted object (cut short or extended)` };
  if (!digest.digest().equals(held)) return { bytes, problem: 'the SHA-256 in its trailer does not match its bytes' };
  return { bytes };
}
