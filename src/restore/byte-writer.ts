const FIRST_CHUNK = 4096;
const LARGEST_CHUNK = 1024 * 1024;

/**
 * Appends bytes into a list of chunks that grow from 4 KiB to 1 MiB, so small batches stay small and
 * large ones are not copied again and again as they grow.
 */
export class ByteWriter {
  private readonly chunks: Buffer[] = [];
  private current: Buffer;
  private used = 0;
  /** Bytes written in all. */
  length = 0;

  constructor(firstChunk = FIRST_CHUNK) {
    this.current = Buffer.allocUnsafe(firstChunk);
  }

  /** Makes room for `n` more bytes in the current chunk. */
  private reserve(n: number): void {
    if (this.used + n <= this.current.length) return;
    if (this.used > 0) this.chunks.push(this.current.subarray(0, this.used));
    this.current = Buffer.allocUnsafe(Math.max(n, Math.min(this.current.length * 2, LARGEST_CHUNK)));
    this.used = 0;
  }

  byte(value: number): void {
    this.reserve(1);
    this.current[this.used++] = value;
    this.length++;
  }

  int32(value: number): void {
    this.reserve(4);
    this.current.writeInt32BE(value, this.used);
    this.used += 4;
    this.length += 4;
  }

  bytes(source: Buffer, start: number, end: number): void {
    const n = end - start;
    this.reserve(n);
    const target = this.current;
    if (n <= 64) {
      // short values: a loop beats the native copy's call overhead
      let o = this.used;
      for (let i = start; i < end; i++) target[o++] = source[i] as number;
    } else {
      source.copy(target, this.used, start, end);
    }
    this.used += n;
    this.length += n;
  }

  /**
   * Lets `fill` write at most `maxBytes` directly into the current chunk at `at`; it returns how many
   * it wrote. For encoders that would otherwise write a byte at a time.
   */
  write(maxBytes: number, fill: (target: Buffer, at: number) => number): void {
    this.reserve(maxBytes);
    const written = fill(this.current, this.used);
    this.used += written;
    this.length += written;
  }

  /** Everything written, as chunks in order. */
  toChunks(): Buffer[] {
    return this.used > 0 ? [...this.chunks, this.current.subarray(0, this.used)] : [...this.chunks];
  }

  toBuffer(): Buffer {
    const chunks = this.toChunks();
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.length);
  }
}
