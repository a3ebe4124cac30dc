import { compressFrame } from 'lz4-napi';
import { CompressedFileWriter } from './compressed-file-writer';

export type { WrittenFile } from './compressed-file-writer';

/**
 * Writes a byte stream to a local file as concatenated LZ4 frames of `chunkBytes` each (the `lz4` tool
 * reads them as one stream), hashing what is stored. Memory stays at about one chunk plus the frames
 * being compressed (compressed in parallel, appended in order).
 */
export class Lz4FileWriter extends CompressedFileWriter {
  private pending = 0;

  constructor(path: string, chunkBytes = 1 << 20) {
    super(path, chunkBytes);
  }

  get pendingBytes(): number {
    return this.pending;
  }

  protected flushChunk(): void {
    if (this.used === 0) return;
    const raw = this.chunk.subarray(0, this.used);
    const size = this.used;
    this.rawTotal += size;
    this.pending += size;
    this.chunk = Buffer.allocUnsafe(this.chunkBytes);
    this.used = 0;
    this.append(compressFrame(raw), () => (this.pending -= size));
  }

  protected endInput(): Promise<void> {
    return Promise.resolve();
  }

  protected abortInput(): void {}
}
