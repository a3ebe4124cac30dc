import type { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { Lz4FileWriter, type WrittenFile } from '../archive/lz4-file-writer';

const MAX_PENDING = 8 * 1024 * 1024;

/**
 * Streams one COPY ... TO STDOUT into an LZ4 spool file; never holds more than a few MiB of it.
 * `onBytes` reports raw bytes as they arrive (progress).
 */
export async function copyChunkToFile(client: Client, sql: string, file: string, onBytes: (n: number) => void): Promise<WrittenFile & { rows: number }> {
  const writer = new Lz4FileWriter(file);
  try {
    const stream = client.query(copyTo(sql));
    for await (const data of stream) {
      writer.write(data as Buffer);
      onBytes((data as Buffer).length);
      if (writer.pendingBytes > MAX_PENDING) await writer.drain();
    }
    const written = await writer.finish();
    return { ...written, rows: stream.rowCount ?? 0 };
  } catch (error) {
    await writer.discard();
    throw error;
  }
}
