import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { Lz4FileWriter, type WrittenFile } from '../archive/lz4-file-writer';

const MAX_PENDING = 8 * 1024 * 1024;

/**
 * Streams one COPY ... TO STDOUT into an LZ4 spool file; never holds more than a few MiB of it.
 * COPY sends one message per row, so rows are taken in 'data' callbacks (no promise per row) and the
 * stream is paused only while the compressor catches up. `onBytes` reports progress.
 */
export function copyChunkToFile(client: Client, sql: string, file: string, onBytes: (n: number) => void): Promise<WrittenFile & { rows: number }> {
  const writer = new Lz4FileWriter(file);
  return new Promise<WrittenFile & { rows: number }>((resolve, reject) => {
    const stream = client.query(copyTo(sql));
    let unreported = 0;
    const fail = (error: unknown): void => {
      stream.destroy();
      void writer.discard().finally(() => reject(error));
    };
    stream.on('data', (data: Buffer) => {
      try {
        writer.write(data);
      } catch (error) {
        fail(error);
        return;
      }
      unreported += data.length;
      if (unreported >= 1 << 20) {
        onBytes(unreported);
        unreported = 0;
      }
      if (writer.pendingBytes > MAX_PENDING && !stream.isPaused()) {
        stream.pause();
        writer.drain().then(() => stream.resume(), fail);
      }
    });
    stream.on('error', fail);
    stream.on('end', () => {
      onBytes(unreported);
      writer.finish().then((written) => resolve({ ...written, rows: stream.rowCount ?? 0 }), fail);
    });
  });
}
