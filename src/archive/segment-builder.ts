import { Lz4FileWriter, type WrittenFile } from './lz4-file-writer';
import { SEGMENT_MAGIC } from './segment-format';

export type SpooledSegment = WrittenFile;

/** Builds one segment into a local spool file: the magic, then length-prefixed records (segment-format.ts). */
export class SegmentBuilder {
  private readonly writer: Lz4FileWriter;

  private constructor(path: string, chunkBytes: number) {
    this.writer = new Lz4FileWriter(path, chunkBytes);
    this.writer.write(SEGMENT_MAGIC);
  }

  static create(path: string, chunkBytes = 1 << 20): SegmentBuilder {
    return new SegmentBuilder(path, chunkBytes);
  }

  get path(): string {
    return this.writer.path;
  }

  /** Bytes of the uncompressed stream so far. */
  get rawBytes(): number {
    return this.writer.rawBytes;
  }

  get pendingBytes(): number {
    return this.writer.pendingBytes;
  }

  /** Appends one record (copies `message`). */
  append(message: Buffer): void {
    this.writer.writeUInt32BE(message.length);
    this.writer.write(message);
  }

  finish(): Promise<SpooledSegment> {
    return this.writer.finish();
  }

  discard(): Promise<void> {
    return this.writer.discard();
  }
}
