import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const MEMORY_BYTES = 32 * 1024 * 1024;

/**
 * Archived records held back in their order, for replay to apply later in the same transaction: the
 * rows of CREATE TABLE AS arrive before the record that creates their table. Up to 32 MB stay in
 * memory; beyond that they go to a temporary file, so memory stays bounded whatever the transaction.
 */
export class RecordSpool {
  private memory: Buffer[] = [];
  private memoryBytes = 0;
  private file: { dir: string; fd: number; path: string; bytes: number } | undefined;
  count = 0;

  /** Keeps a copy of `data[start, end)`. */
  add(data: Buffer, start: number, end: number): void {
    this.count++;
    if (!this.file && this.memoryBytes + (end - start) <= MEMORY_BYTES) {
      this.memory.push(Buffer.from(data.subarray(start, end)));
      this.memoryBytes += end - start;
      return;
    }
    if (!this.file) {
      const dir = mkdtempSync(path.join(tmpdir(), 'pitr-spool-'));
      const file = path.join(dir, 'records');
      this.file = { dir, path: file, fd: openSync(file, 'w+'), bytes: 0 };
    }
    const header = Buffer.alloc(4);
    header.writeUInt32BE(end - start);
    this.file.bytes += writeSync(this.file.fd, header);
    this.file.bytes += writeSync(this.file.fd, data, start, end - start);
  }

  /** Every record held, in order, emptying the spool (records added while draining are held anew). */
  *drain(): Generator<Buffer> {
    const memory = this.memory;
    const file = this.file;
    this.memory = [];
    this.memoryBytes = 0;
    this.file = undefined;
    this.count = 0;
    yield* memory;
    if (!file) return;
    try {
      const header = Buffer.alloc(4);
      for (let at = 0; at < file.bytes;) {
        readSync(file.fd, header, 0, 4, at);
        const length = header.readUInt32BE(0);
        const record = Buffer.alloc(length);
        readSync(file.fd, record, 0, length, at + 4);
        at += 4 + length;
        yield record;
      }
    } finally {
      closeSync(file.fd);
      rmSync(file.dir, { recursive: true, force: true });
    }
  }

  /** Drops what is held (a failed or finished replay). */
  clear(): void {
    for (const _ of this.drain()) {
      // discard
    }
  }
}
