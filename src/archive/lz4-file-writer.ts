import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { compressFrame } from 'lz4-napi';

export interface WrittenFile {
  path: string;
  rawBytes: number;
  storedBytes: number;
  /** Of the stored (compressed) bytes. */
  sha256: string;
  md5: string;
}

/**
 * Writes a byte stream to a local file as concatenated LZ4 frames of `chunkBytes` each (the `lz4` tool
 * reads them as one stream), hashing what is stored. Memory stays at about one chunk plus the frames
 * being compressed; `pendingBytes` lets callers apply backpressure.
 */
export class Lz4FileWriter {
  private chunk: Buffer;
  private used = 0;
  private rawTotal = 0;
  private stored = 0;
  private readonly sha = createHash('sha256');
  private readonly md5 = createHash('md5');
  private writes: Promise<void>;
  private handle: fs.FileHandle | undefined;
  private failure: unknown;
  pendingBytes = 0;

  /** Synchronous so a writer can start inside a stream callback; the file opens on the write chain. */
  constructor(
    readonly path: string,
    private readonly chunkBytes = 1 << 20,
  ) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
    this.writes = fs.open(path, 'wx').then((handle) => {
      this.handle = handle;
    });
    this.writes.catch((error: unknown) => (this.failure = error));
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

  private flushChunk(): void {
    if (this.used === 0) return;
    const raw = this.chunk.subarray(0, this.used);
    const size = this.used;
    this.rawTotal += size;
    this.pendingBytes += size;
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
    this.writes.catch((error: unknown) => (this.failure = error));
  }

  /** Resolves once what was written so far is compressed and in the file (for backpressure). */
  async drain(): Promise<void> {
    await this.writes;
    if (this.failure) throw this.failure;
  }

  async finish(): Promise<WrittenFile> {
    this.flushChunk();
    await this.drain();
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
