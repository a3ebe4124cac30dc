import fs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import PQueue from 'p-queue';
import { encodeCheckedJson } from '../archive/checked-json';
import type { Repository } from '../archive/repository';
import { FORMAT_VERSION } from '../archive/segment-format';
import { lsnToSortableHex } from '../pg/lsn';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';
import { connectSource, identifySystem } from '../pg/connect';
import { withClient } from '../pg/with-client';
import { sourceFacts } from '../capture/source-checks';
import type { SourceConnection } from '../config/connection';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import { MANIFEST_FILE, STARTED_FILE, backupId, backupPrefix, type BackupManifest, type BackupTable, type StoredPart } from '../archive/backup-manifest';
import { removeIncompleteBackups, removePrefix } from './cleanup';
import { copyChunkToFile } from './copy-chunk';
import { exportSnapshot } from './exported-snapshot';
import { findPgTool } from './pg-tools';
import { Progress } from './progress';
import { dumpSchema } from './schema-dump';
import { chunkCopySql, planTables, readSequences } from './table-plan';

export interface BackupOptions {
  jobs: number;
  chunkBytes: number;
  pgDump?: string;
  spoolDir?: string;
}

export interface BackupDeps {
  repo: Repository;
  source: SourceConnection;
  log: Logger;
  signal?: AbortSignal;
}

/** A session inside the exported snapshot, with the archive's output settings. */
async function snapshotSession(deps: BackupDeps, snapshotName: string): Promise<Client> {
  const client = await connectSource(deps.source.config, deps.source.display, { application_name: 'pitr backup', options: DECODING_SESSION_OPTIONS });
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await client.query(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
  return client;
}

/**
 * Takes one base backup aligned to a stream position (see exported-snapshot.ts): schema through
 * pg_dump, data through COPY over `jobs` sessions sharing the snapshot, chunk by chunk into the
 * repository, and the manifest last. On failure the pieces are removed (or, after a crash, by the
 * next backup), so nothing incomplete ever looks like a backup.
 */
export function runBackup(deps: BackupDeps, options: BackupOptions): Promise<BackupManifest> {
  return withClient(deps.source, { application_name: 'pitr backup' }, (coordinator) => backUp(deps, options, coordinator));
}

async function backUp(deps: BackupDeps, options: BackupOptions, coordinator: Client): Promise<BackupManifest> {
  const { repo, source, log } = deps;
  const started = new Date();
  const sessions: Client[] = [];
  const spool = await fs.mkdtemp(path.join(options.spoolDir ?? tmpdir(), 'pitr-backup-'));
  let prefix: string | undefined;
  let snapshot: Awaited<ReturnType<typeof exportSnapshot>> | undefined;
  try {
    const facts = await sourceFacts(coordinator);
    const major = Math.floor(facts.serverVersionNum / 10000);
    const pgDump = await findPgTool('pg_dump', major, options.pgDump);
    const pgRestore = await findPgTool('pg_restore', major, options.pgDump);
    const system = await identifySystem(source.config, source.display);
    await repo.storage.checkWritable();
    await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
    await removeIncompleteBackups(repo, coordinator, log);

    snapshot = await exportSnapshot(source.config, source.display, log, () => connectSource(source.config, source.display));
    const id = backupId(lsnToSortableHex(snapshot.consistentLsn), started);
    prefix = backupPrefix(id);
    await repo.storage.put(`${prefix}${STARTED_FILE}`, {
      kind: 'buffer',
      data: encodeCheckedJson({ id, slot: snapshot.slotName, host: hostname(), pid: process.pid, startedAt: started.toISOString() }),
    });
    log.info(
      { event: 'backup_started', id, alignedLsn: snapshot.consistentLsnText, snapshot: snapshot.snapshotName },
      `backup ${id} aligned at ${snapshot.consistentLsnText}`,
    );

    const planner = await snapshotSession(deps, snapshot.snapshotName);
    sessions.push(planner);
    const tables = await planTables(planner, options.chunkBytes);
    const sequences = await readSequences(planner);
    for (let i = 1; i < options.jobs; i++) sessions.push(await snapshotSession(deps, snapshot.snapshotName));

    const store = async (name: string, file: { path: string; rawBytes: number; storedBytes: number; sha256: string }): Promise<StoredPart> => {
      await repo.storage.put(`${prefix}${name}`, { kind: 'file', path: file.path, consume: true });
      return { name, rawBytes: file.rawBytes, storedBytes: file.storedBytes, sha256: file.sha256 };
    };
    const schemaDone = dumpSchema(pgDump, pgRestore, source.config, snapshot.snapshotName, spool).then(async (files) => ({
      dump: await store('schema/schema.dump.lz4', files.dump),
      preData: await store('schema/pre-data.sql.lz4', files.preData),
      postData: await store('schema/post-data.sql.lz4', files.postData),
    }));
    schemaDone.catch(() => undefined);

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
          if (deps.signal?.aborted)
            throw new PitrError('Interrupted', 'backup interrupted: its pieces are removed, nothing of it is used', 'run "pitr backup" again');
          const session = idle.pop() as Client;
          try {
            const name = `data/${table.oid}.${String(chunkIndex).padStart(5, '0')}.copy.lz4`;
            const file = await copyChunkToFile(session, chunkCopySql(table, chunk), path.join(spool, `${table.oid}.${chunkIndex}`), (n) =>
              progress.addBytes(n),
            );
            const part = await store(name, file);
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
    const schema = await schemaDone;

    const chunks = results.flatMap((t) => t.chunks);
    const manifest: BackupManifest = {
      format: FORMAT_VERSION,
      kind: 'backup',
      id,
      systemIdentifier: system.systemIdentifier,
      database: system.database,
      serverVersion: facts.serverVersion,
      serverVersionNum: facts.serverVersionNum,
      alignedLsn: snapshot.consistentLsnText,
      startTime: started.toISOString(),
      endTime: new Date().toISOString(),
      sessionSettings: DECODING_SESSION_OPTIONS,
      schema,
      tables: results,
      sequences,
      totals: {
        tables: results.length,
        chunks: chunks.length,
        rows: results.reduce((n, t) => n + t.rows, 0),
        rawBytes: chunks.reduce((n, c) => n + c.rawBytes, 0) + schema.dump.rawBytes,
        storedBytes: chunks.reduce((n, c) => n + c.storedBytes, 0) + schema.dump.storedBytes + schema.preData.storedBytes + schema.postData.storedBytes,
      },
    };
    await repo.storage.put(`${prefix}${MANIFEST_FILE}`, { kind: 'buffer', data: encodeCheckedJson(manifest) });
    await repo.storage.remove(`${prefix}${STARTED_FILE}`);
    log.info({ event: 'backup_done', id, alignedLsn: manifest.alignedLsn, ...manifest.totals }, `backup ${id} complete`);
    return manifest;
  } catch (error) {
    if (prefix) await removePrefix(repo, prefix, log);
    throw error;
  } finally {
    for (const session of sessions) await session.end().catch(() => undefined);
    await snapshot?.release();
    await fs.rm(spool, { recursive: true, force: true });
  }
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
