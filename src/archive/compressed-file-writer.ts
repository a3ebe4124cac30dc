import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';

export interface WrittenFile {
  path: string;
  rawBytes: number;
  storedBytes: number;
  /** Of the stored (compressed) bytes. */
  sha256: string;
  md5: string;
}

/**
 * What the compressed file writers share (lz4-file-writer.ts, brotli-file-writer.ts): the input is
 * copied into a buffer of `chunkBytes` and each full buffer handed to the codec; what the codec makes of
 * it is appended to the file in order and hashed as stored. `pendingBytes` and `drain` let callers apply
 * backpressure, so memory stays at a few buffers whatever the size of the stream.
 */
export abstract class CompressedFileWriter {
  protected chunk: Buffer;
  protected used = 0;
  protected rawTotal = 0;
  protected failure: unknown;
  private stored = 0;
  private readonly sha = createHash('sha256');
  private readonly md5 = createHash('md5');
  private writes: Promise<void>;
  private handle: fs.FileHandle | undefined;

  /** Synchronous so a writer can start inside a stream callback; the file opens on the write chain. */
  constructor(
    readonly path: string,
    protected readonly chunkBytes: number,
  ) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
    this.writes = fs.open(path, 'wx').then((handle) => {
      this.handle = handle;
    });
    this.writes.catch((error: unknown) => (this.failure ??= error));
  }

  /** Bytes handed on and not yet compressed and in the file. */
  abstract get pendingBytes(): number;

  /** Hands the buffered input (`chunk`, `used` bytes) to the codec and starts a new buffer. */
  protected abstract flushChunk(): void;

  /** After the last flushChunk: resolves once the codec has given out everything (appended). */
  protected abstract endInput(): Promise<void>;

  /** Stops the codec of a discarded file. */
  protected abstract abortInput(): void;

  /** Resolves once the codec has taken everything handed on (before its output is appended). */
  protected inputTaken(): Promise<void> {
    return Promise.resolve();
  }

  /** Bytes written so far, uncompressed. */
  get rawBytes(): number {
    return this.rawTotal + this.used;
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

  writeUInt32BE(value: number): void {
    if (this.chunk.length - this.used < 4) this.flushChunk();
    this.chunk.writeUInt32BE(value, this.used);
    this.used += 4;
  }

  /** Appends compressed output to the file after what was appended before, hashing it; `then` runs once it is written. */
  protected append(output: Buffer | Promise<Buffer>, then?: () => void): void {
    this.writes = this.writes.then(async () => {
      const bytes = await output;
      this.sha.update(bytes);
      this.md5.update(bytes);
      await (this.handle as fs.FileHandle).write(bytes);
      this.stored += bytes.length;
      then?.();
    });
    this.writes.catch((error: unknown) => (this.failure ??= error));
  }

  /** Resolves once what was handed on so far is compressed and in the file (for backpressure). */
  async drain(): Promise<void> {
    await this.inputTaken();
    await this.writes;
    if (this.failure) throw this.failure;
  }

  async finish(): Promise<WrittenFile> {
    this.flushChunk();
    await this.endInput();
    await this.writes;
    if (this.failure) throw this.failure;
    await (this.handle as fs.FileHandle).close();
    this.handle = undefined;
    return { path: this.path, rawBytes: this.rawTotal, storedBytes: this.stored, sha256: this.sha.digest('hex'), md5: this.md5.digest('base64') };
  }

  async discard(): Promise<void> {
    this.abortInput();
    await this.writes.catch(() => undefined);
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await fs.rm(this.path, { force: true });
  }
}
