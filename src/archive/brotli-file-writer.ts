import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import zlib from 'node:zlib';
import type { WrittenFile } from './lz4-file-writer';

/**
 * Brotli quality of backup chunks. Measured on COPY text (scripts/bench-backup.ts): quality 1 compresses
 * nearly as fast as LZ4 (on zlib's thread pool, off the main thread) to about gzip -6's size or
 * smaller; higher qualities cost much more time for little.
 */
export const BROTLI_QUALITY = 1;

/**
 * Writes a byte stream to a local file as one Brotli stream (`brotli -d` reads it), hashing what is
 * stored. Same contract as Lz4FileWriter: `write` copies its input into a buffer of `chunkBytes`,
 * full buffers go to the compressor (which runs on the thread pool), `pendingBytes` and `drain` let
 * callers apply backpressure, and memory stays at a few buffers whatever the size of the stream.
 */
export class BrotliFileWriter {
  private chunk: Buffer;
  private used = 0;
  private rawTotal = 0;
  private stored = 0;
  private queuedOutput = 0;
  private readonly sha = createHash('sha256');
  private readonly md5 = createHash('md5');
  private readonly compressor: zlib.BrotliCompress;
  private readonly ended: Promise<void>;
  private writes: Promise<void>;
  private handle: fs.FileHandle | undefined;
  private failure: unknown;
  private lastInput: Promise<void> = Promise.resolve();
  private readonly free: Buffer[] = [];

  /** Synchronous so a writer can start inside a stream callback; the file opens on the write chain. */
  constructor(
    readonly path: string,
    private readonly chunkBytes = 1 << 20,
    quality = BROTLI_QUALITY,
  ) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
    this.writes = fs.open(path, 'wx').then((handle) => {
      this.handle = handle;
    });
    this.writes.catch((error: unknown) => (this.failure ??= error));
    this.compressor = zlib.createBrotliCompress({
      chunkSize: 256 * 1024,
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT },
    });
    this.compressor.on('data', (out: Buffer) => {
      this.sha.update(out);
      this.md5.update(out);
      this.stored += out.length;
      this.queuedOutput += out.length;
      this.writes = this.writes.then(async () => {
        await (this.handle as fs.FileHandle).write(out);
        this.queuedOutput -= out.length;
      });
      this.writes.catch((error: unknown) => (this.failure ??= error));
    });
    this.ended = new Promise((resolve, reject) => {
      this.compressor.on('end', resolve);
      this.compressor.on('error', (error: unknown) => {
        this.failure ??= error;
        reject(error);
      });
    });
    this.ended.catch(() => undefined);
  }

  /** Bytes written so far, uncompressed. */
  get rawBytes(): number {
    return this.rawTotal + this.used;
  }

  /** Bytes handed on and not yet compressed and in the file. */
  get pendingBytes(): number {
    return this.compressor.writableLength + this.queuedOutput;
  }

  /** Copies `data` in (the caller may reuse its buffer afterwards). */
  write(data: Buffer): void {
    if (this.failure) throw this.failure;
    let offset = 0;
    while (offset < data.length) {
      if (this.used === this.chunk.length) this.flushChunk();
      const n = Math.min(data.length - offset, this.chunk.length - this.used);
      data.copy(this.chunk, this.used, offset, offset + n);
      this.used += n;
      offset += n;
    }
  }

  private flushChunk(): void {
    if (this.used === 0) return;
    const full = this.chunk;
    // the callback runs once the compressor has taken this input and pushed out what it made of it;
    // then the buffer is free again (fresh large buffers cost page faults and collections)
    this.lastInput = new Promise<void>((resolve) =>
      this.compressor.write(full.subarray(0, this.used), () => {
        if (this.free.length < 4) this.free.push(full);
        resolve();
      }),
    );
    this.rawTotal += this.used;
    this.chunk = this.free.pop() ?? Buffer.allocUnsafe(this.chunkBytes);
    this.used = 0;
  }

  /** Resolves once what was handed on so far is compressed and in the file (for backpressure). */
  async drain(): Promise<void> {
    await this.lastInput;
    await this.writes;
    if (this.failure) throw this.failure;
  }

  async finish(): Promise<WrittenFile> {
    this.flushChunk();
    this.compressor.end();
    await this.ended;
    await this.writes;
    if (this.failure) throw this.failure;
    await (this.handle as fs.FileHandle).close();
    this.handle = undefined;
    return { path: this.path, rawBytes: this.rawTotal, storedBytes: this.stored, sha256: this.sha.digest('hex'), md5: this.md5.digest('base64') };
  }

  async discard(): Promise<void> {
    this.compressor.destroy();
    await this.writes.catch(() => undefined);
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await fs.rm(this.path, { force: true });
  }
}
