import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs/promises';
import { compressFrame } from 'lz4-napi';
import { RECORD_HEADER_BYTES, SEGMENT_MAGIC } from './segment-format';

export interface SpooledSegment {
  path: string;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
  md5: string;
}

/**
 * Builds one segment into a local spool file. Records are framed into a raw buffer of `chunkBytes`;
 * each full buffer becomes one LZ4 frame appended to the file (the `lz4` tool reads concatenated frames
 * as one stream). Memory stays at about one raw chunk plus the frames being compressed, whatever the
 * size of the transactions; `pendingBytes` lets the caller apply backpressure.
 */
export class SegmentBuilder {
  private chunk: Buffer;
  private used = 0;
  private rawTotal = 0;
  private stored = 0;
  private readonly sha = createHash('sha256');
  private readonly md5: Hash = createHash('md5');
  private writes: Promise<void> = Promise.resolve();
  private handle: fs.FileHandle | undefined;
  private failure: unknown;
  pendingBytes = 0;

  private constructor(
    readonly path: string,
    private readonly chunkBytes: number,
  ) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
    this.chunk.set(SEGMENT_MAGIC, 0);
    this.used = SEGMENT_MAGIC.length;
  }

  /** Synchronous so a builder can start inside a stream callback; the file opens on the write chain. */
  static create(path: string, chunkBytes = 1 << 20): SegmentBuilder {
    const builder = new SegmentBuilder(path, chunkBytes);
    builder.writes = fs.open(path, 'wx').then((handle) => {
      builder.handle = handle;
    });
    builder.writes.catch((error: unknown) => {
      builder.failure = error;
    });
    return builder;
  }

  /** Bytes of the uncompressed stream so far. */
  get rawBytes(): number {
    return this.rawTotal + this.used;
  }

  /** Appends one record (copies `message`; the caller may reuse its buffer afterwards). */
  append(message: Buffer): void {
    if (this.failure) throw this.failure;
    const needed = RECORD_HEADER_BYTES + message.length;
    if (this.used + needed > this.chunk.length) {
      this.flushChunk();
      if (needed > this.chunk.length) this.chunk = Buffer.allocUnsafe(needed);
    }
    this.chunk.writeUInt32BE(message.length, this.used);
    message.copy(this.chunk, this.used + RECORD_HEADER_BYTES);
    this.used += needed;
  }

  private flushChunk(): void {
    if (this.used === 0) return;
    const raw = this.chunk.subarray(0, this.used);
    this.rawTotal += this.used;
    this.pendingBytes += this.used;
    const size = this.used;
    this.chunk = Buffer.allocUnsafe(this.chunkBytes);
    this.used = 0;
    const compressed = compressFrame(raw);
    this.writes = this.writes.then(async () => {
      const frame = await compressed;
      this.sha.update(frame);
      this.md5.update(frame);
      await (this.handle as fs.FileHandle).write(frame);
      this.stored += frame.length;
      this.pendingBytes -= size;
    });
    this.writes.catch((error: unknown) => {
      this.failure = error;
    });
  }

  /** Resolves once the writes queued so far are on the file (not fsynced: the storage put does that). */
  async drain(): Promise<void> {
    await this.writes;
  }

  async finish(): Promise<SpooledSegment> {
    this.flushChunk();
    await this.writes;
    await (this.handle as fs.FileHandle).close();
    this.handle = undefined;
    return { path: this.path, rawBytes: this.rawTotal, storedBytes: this.stored, sha256: this.sha.digest('hex'), md5: this.md5.digest('base64') };
  }

  async discard(): Promise<void> {
    await this.writes.catch(() => undefined);
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await fs.rm(this.path, { force: true });
  }
}
