import zlib from 'node:zlib';
import { CompressedFileWriter } from './compressed-file-writer';

/**
 * Brotli quality of backup chunks. Measured on COPY text (scripts/bench-backup.ts): quality 1 compresses
 * nearly as fast as LZ4 (on zlib's thread pool, off the main thread) to about gzip -6's size or
 * smaller; higher qualities cost much more time for little.
 */
export const BROTLI_QUALITY = 1;

/**
 * Writes a byte stream to a local file as one Brotli stream (`brotli -d` reads it), hashing what is
 * stored. Full buffers go to the compressor, which runs on the thread pool; a buffer it has taken is
 * used again (fresh large buffers cost page faults and collections).
 */
export class BrotliFileWriter extends CompressedFileWriter {
  private queuedOutput = 0;
  private readonly compressor: zlib.BrotliCompress;
  private readonly ended: Promise<void>;
  private lastInput: Promise<void> = Promise.resolve();
  private readonly free: Buffer[] = [];

  constructor(path: string, chunkBytes = 1 << 20, quality = BROTLI_QUALITY) {
    super(path, chunkBytes);
    this.compressor = zlib.createBrotliCompress({
      chunkSize: 256 * 1024,
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT },
    });
    this.compressor.on('data', (out: Buffer) => {
      this.queuedOutput += out.length;
      this.append(out, () => (this.queuedOutput -= out.length));
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

  get pendingBytes(): number {
    return this.compressor.writableLength + this.queuedOutput;
  }

  protected flushChunk(): void {
    if (this.used === 0) return;
    const full = this.chunk;
    // the callback runs once the compressor has taken this input and pushed out what it made of it
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

  protected inputTaken(): Promise<void> {
    return this.lastInput;
  }

  protected async endInput(): Promise<void> {
    this.compressor.end();
    await this.ended;
  }

  protected abortInput(): void {
    this.compressor.destroy();
  }
}
