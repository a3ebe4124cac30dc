import path from 'node:path';
import type { Client } from 'pg';
import PQueue from 'p-queue';
import type { BackupTable, PartCodec, StoredPart } from '../archive/backup-manifest';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import { copyChunkToFile } from './copy-chunk';
import { Progress } from './progress';
import { chunkCopySql, type TablePlan } from './table-plan';

/** Stores a spool file under the backup's prefix as `name` (consuming the file). */
export type StorePart = (name: string, file: { path: string; codec?: PartCodec; rawBytes: number; storedBytes: number; sha256: string }) => Promise<StoredPart>;

/**
 * Copies every chunk of `tables` through COPY into spool files under `spool`, over `sessions` (one
 * chunk per session at a time), each stored as soon as it is written. The first failure stops the
 * chunks not started yet and is thrown once those in flight are done.
 */
export async function copyTables(
  sessions: readonly Client[],
  tables: readonly TablePlan[],
  spool: string,
  store: StorePart,
  log: Logger,
  signal?: AbortSignal,
): Promise<BackupTable[]> {
  const totalBytes = tables.reduce((n, t) => n + t.bytes, 0);
  const progress = new Progress('backup', tables.length, totalBytes, log);
  const results: BackupTable[] = tables.map((t) => ({ oid: t.oid, schema: t.schema, name: t.name, columns: t.columns, rows: 0, rawBytes: 0, chunks: [] }));
  const idle = [...sessions];
  const queue = new PQueue({ concurrency: sessions.length });
  const remainingChunks = new Map(tables.map((t) => [t.oid, t.chunks.length]));
  let copyFailure: unknown;
  tables.forEach((table, tableIndex) =>
    table.chunks.forEach((chunk, chunkIndex) => {
      const task = queue.add(async () => {
        if (signal?.aborted) throw new PitrError('Interrupted', 'backup interrupted: its pieces are removed, nothing of it is used', 'run "pitr backup" again');
        const session = idle.pop() as Client;
        try {
          const name = `data/${table.oid}.${String(chunkIndex).padStart(5, '0')}.copy.br`;
          const file = await copyChunkToFile(session, chunkCopySql(table, chunk), path.join(spool, `${table.oid}.${chunkIndex}`), (n) => progress.addBytes(n));
          const part = await store(name, { ...file, codec: 'brotli' });
          const result = results[tableIndex] as BackupTable;
          result.chunks[chunkIndex] = { ...part, rows: file.rows };
          result.rows += file.rows;
          result.rawBytes += file.rawBytes;
        } catch (error) {
          throw copyError(error, table.schema, table.name);
        } finally {
          idle.push(session);
        }
        const left = (remainingChunks.get(table.oid) as number) - 1;
        remainingChunks.set(table.oid, left);
        if (left === 0) progress.itemDone();
      });
      task.catch((error: unknown) => {
        copyFailure ??= error;
        queue.clear();
      });
    }),
  );
  await queue.onIdle();
  progress.finish();
  if (copyFailure) throw copyFailure;
  return results;
}

function copyError(error: unknown, schema: string, table: string): unknown {
  if (error instanceof PitrError) return error;
  const e = error as { code?: string };
  if (e.code === '42501')
    return new PitrError(
      'SourceConfig',
      `permission denied to read table "${schema}"."${table}"`,
      `GRANT SELECT ON "${schema}"."${table}" TO <backup role>; or run the backup as a superuser`,
    );
  return new PitrError('Internal', `copying "${schema}"."${table}" failed: ${messageOf(error)}`, undefined, { cause: error });
}
