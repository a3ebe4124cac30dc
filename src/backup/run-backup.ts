import fs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import { encodeCheckedJson } from '../archive/checked-json';
import type { Repository } from '../archive/repository';
import { lsnToSortableHex } from '../pg/lsn';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';
import { connectSource, identifySystem, type SystemIdentity } from '../pg/connect';
import { withClient, withClients } from '../pg/with-client';
import { sourceFacts, type SourceFacts } from '../capture/source-checks';
import type { SourceConnection } from '../config/connection';
import type { Logger } from '../logger';
import { BACKUP_FORMAT, MANIFEST_FILE, STARTED_FILE, backupId, backupPrefix, type BackupManifest } from '../archive/backup-manifest';
import { removeIncompleteBackups, removePrefix } from './cleanup';
import { copyTables, type StorePart } from './copy-tables';
import { withExportedSnapshot, type ExportedSnapshot } from './exported-snapshot';
import { findPgTool, type PgTool } from './pg-tools';
import { dumpSchema } from './schema-dump';
import { planTables, readSequences } from './table-plan';

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
const SNAPSHOT_SESSION = { application_name: 'pitr backup', options: DECODING_SESSION_OPTIONS };

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
  const spool = await fs.mkdtemp(path.join(options.spoolDir ?? tmpdir(), 'pitr-backup-'));
  let prefix: string | undefined;
  try {
    const ready = await prepareBackup(deps, options, coordinator);
    const openWatcher = (): Promise<Client> => connectSource(source.config, source.display);
    return await withExportedSnapshot(source, log, openWatcher, async (snapshot) => {
      const id = backupId(lsnToSortableHex(snapshot.consistentLsn), started);
      const backupAt = backupPrefix(id);
      prefix = backupAt;
      await markStarted(deps, backupAt, id, snapshot, started);
      const store: StorePart = async (name, file) => {
        await repo.storage.put(`${backupAt}${name}`, { kind: 'file', path: file.path, consume: true });
        return { name, ...(file.codec ? { codec: file.codec } : {}), rawBytes: file.rawBytes, storedBytes: file.storedBytes, sha256: file.sha256 };
      };
      const { snapshotName } = snapshot;
      const contents = await withSnapshotSessions(deps, snapshotName, options.jobs, async (sessions) => {
        const planner = sessions[0] as Client; // --jobs is at least 1
        const tables = await planTables(planner, options.chunkBytes, options.jobs);
        const sequences = await readSequences(planner);
        const schemaDone = dumpSchema(ready.pgDump, ready.pgRestore, source.config, snapshotName, spool).then(async (files) => ({
          dump: await store('schema/schema.dump.lz4', files.dump),
          preData: await store('schema/pre-data.sql.lz4', files.preData),
          postData: await store('schema/post-data.sql.lz4', files.postData),
        }));
        schemaDone.catch(() => undefined);
        const results = await copyTables(sessions, tables, spool, store, log, deps.signal);
        return { tables: results, sequences, schema: await schemaDone };
      });
      const manifest = backupManifest(id, ready, snapshot, started, contents);
      await repo.storage.put(`${backupAt}${MANIFEST_FILE}`, { kind: 'buffer', data: encodeCheckedJson(manifest) });
      await repo.storage.remove(`${backupAt}${STARTED_FILE}`);
      log.info({ event: 'backup_done', id, alignedLsn: manifest.alignedLsn, ...manifest.totals }, `backup ${id} complete`);
      return manifest;
    });
  } catch (error) {
    if (prefix) await removePrefix(repo, prefix, log);
    throw error;
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
}

/** What a backup learns of the source before it starts: its facts, its tools and its identity. */
interface ReadyBackup {
  facts: SourceFacts;
  pgDump: PgTool;
  pgRestore: PgTool;
  system: SystemIdentity;
}

/**
 * Checks that the backup can be taken and kept: pg_dump and pg_restore for the source's major
 * version, a writable repository that is this source's (claimed for it when new); removes the pieces
 * of backups that died before finishing.
 */
async function prepareBackup(deps: BackupDeps, options: BackupOptions, coordinator: Client): Promise<ReadyBackup> {
  const { repo, source, log } = deps;
  const facts = await sourceFacts(coordinator);
  const major = Math.floor(facts.serverVersionNum / 10000);
  const pgDump = await findPgTool('pg_dump', major, options.pgDump);
  const pgRestore = await findPgTool('pg_restore', major, options.pgDump);
  const system = await identifySystem(source.config, source.display);
  await repo.storage.checkWritable();
  await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
  await removeIncompleteBackups(repo, coordinator, log);
  return { facts, pgDump, pgRestore, system };
}

/** The started marker names the backup's slot and process, so that a later backup can tell a dead one from a running one. */
async function markStarted(deps: BackupDeps, prefix: string, id: string, snapshot: ExportedSnapshot, started: Date): Promise<void> {
  await deps.repo.storage.put(`${prefix}${STARTED_FILE}`, {
    kind: 'buffer',
    data: encodeCheckedJson({ id, slot: snapshot.slotName, host: hostname(), pid: process.pid, startedAt: started.toISOString() }),
  });
  deps.log.info(
    { event: 'backup_started', id, alignedLsn: snapshot.consistentLsnText, snapshot: snapshot.snapshotName },
    `backup ${id} aligned at ${snapshot.consistentLsnText}`,
  );
}

/** `count` sessions inside the exported snapshot, closed whatever `fn` does. */
function withSnapshotSessions<T>(deps: BackupDeps, snapshotName: string, count: number, fn: (sessions: Client[]) => Promise<T>): Promise<T> {
  return withClients(deps.source, SNAPSHOT_SESSION, count, async (sessions) => {
    for (const session of sessions) {
      await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await session.query(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "''")}'`);
    }
    return fn(sessions);
  });
}

function backupManifest(
  id: string,
  ready: ReadyBackup,
  snapshot: ExportedSnapshot,
  started: Date,
  contents: Pick<BackupManifest, 'tables' | 'sequences' | 'schema'>,
): BackupManifest {
  const { tables, schema } = contents;
  const chunks = tables.flatMap((t) => t.chunks);
  return {
    format: BACKUP_FORMAT,
    kind: 'backup',
    id,
    systemIdentifier: ready.system.systemIdentifier,
    database: ready.system.database,
    serverVersion: ready.facts.serverVersion,
    serverVersionNum: ready.facts.serverVersionNum,
    alignedLsn: snapshot.consistentLsnText,
    startTime: started.toISOString(),
    endTime: new Date().toISOString(),
    sessionSettings: DECODING_SESSION_OPTIONS,
    schema,
    tables,
    sequences: contents.sequences,
    totals: {
      tables: tables.length,
      chunks: chunks.length,
      rows: tables.reduce((n, t) => n + t.rows, 0),
      rawBytes: chunks.reduce((n, c) => n + c.rawBytes, 0) + schema.dump.rawBytes,
      storedBytes: chunks.reduce((n, c) => n + c.storedBytes, 0) + schema.dump.storedBytes + schema.preData.storedBytes + schema.postData.storedBytes,
    },
  };
}
