import type { Client } from 'pg';
import { BrotliFileWriter } from '../archive/brotli-file-writer';
import type { WrittenFile } from '../archive/compressed-file-writer';
import { copyOut } from '../pg/copy-out-query';

const MAX_PENDING = 8 * 1024 * 1024;

/**
 * Streams one COPY ... TO STDOUT into a Brotli spool file; never holds more than a few MiB of it.
 * The session's socket is read only while the compressor keeps up. `onBytes` reports progress.
 */
export async function copyChunkToFile(client: Client, sql: string, file: string, onBytes: (n: number) => void): Promise<WrittenFile & { rows: number }> {
  const writer = new BrotliFileWriter(file);
  let unreported = 0;
  try {
    const rows = await copyOut(client, sql, {
      write: (bytes) => {
        writer.write(bytes);
        unreported += bytes.length;
        if (unreported >= 1 << 20) {
          onBytes(unreported);
          unreported = 0;
        }
      },
      backpressure: () => (writer.pendingBytes > MAX_PENDING ? writer.drain() : undefined),
    });
    onBytes(unreported);
    return { ...(await writer.finish()), rows };
  } catch (error) {
    await writer.discard();
    throw error;
  }
}
