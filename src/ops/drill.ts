import type { Client, ClientConfig } from 'pg';
import type { Repository } from '../archive/repository';
import { readTransactions } from '../archive/transaction-reader';
import { MessagePrefix } from '../archive/segment-format';
import { ddlSummary, parseDdlRecord } from '../archive/ddl-record';
import type { BackupManifest } from '../archive/backup-manifest';
import { listBackups } from '../archive/backup-catalog';
import { formatLsn, parseLsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';
import { withClient, withTransaction } from '../pg/with-client';
import { qualifiedName, quoteIdent } from '../pg/sql-quote';
import { configForDatabase, databaseOf, redactUrl } from '../config/connection';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { runRestore, type RestoreSummary } from '../restore/run-restore';
import { readSegmentManifests } from './list';

export interface DrillOptions {
  targetUrl: string;
  to: string;
  keep: boolean;
  /** Source connection, for the informational fingerprint comparison (only with --to latest). */
  source?: { config: ClientConfig; display: string };
  jobs?: number;
}

export interface DrillTable {
  name: string;
  expectedRows: number;
  /** null when the table is missing from the scratch database. */
  rows: number | null;
  ok: boolean;
  /** Set when a DDL statement of the archive drops or renames the table: its absence is expected. */
  note?: string;
  /** Informational (--source with --to latest): whether the table's fingerprint equals the source's. */
  sourceMatches?: boolean;
}

export interface DrillReport {
  ok: boolean;
  target: string;
  backup: RestoreSummary['backup'];
  lastApplied: RestoreSummary['lastApplied'];
  rtoSeconds: number;
  rpoSeconds: number;
  tables: DrillTable[];
  kept: boolean;
  restore: { resolved: string; transactions: number; changes: number; seconds: RestoreSummary['seconds'] };
  source?: { compared: boolean; walInsertLsn: string; note: string };
}

/** Expected row counts per "schema.table" and the DDL statements met, from the backup plus the archived changes. */
export interface ExpectedRows {
  counts: Map<string, number>;
  ddl: string[];
}

/**
 * The row count each table should have after the restore: the backup's per-table counts, then the
 * archived transactions from the backup's aligned LSN up to (and including) `lastCommitLsn`: inserts
 * add one, deletes remove one, truncates reset to zero; tables first seen later start at zero.
 */
export async function expectedRows(repo: Repository, backup: BackupManifest, lastCommitLsn: string | undefined): Promise<ExpectedRows> {
  const counts = new Map<string, number>();
  for (const t of backup.tables) counts.set(`${t.schema}.${t.name}`, t.rows);
  const ddl: string[] = [];
  if (lastCommitLsn === undefined) return { counts, ddl };
  const aligned = parseLsn(backup.alignedLsn);
  const last = parseLsn(lastCommitLsn);
  const segments = (await readSegmentManifests(repo, { endAfter: aligned, firstAtOrBefore: last })).filter(
    (s) => parseLsn(s.endLsn) > aligned && parseLsn(s.firstCommitLsn) <= last,
  );
  const names = new Map<number, string>(); // relation id → current "schema.table"
  const nameOf = (txnRelations: Map<number, { namespace: string; name: string }>, relationId: number): string | undefined => {
    const relation = txnRelations.get(relationId);
    if (!relation) return names.get(relationId);
    const name = `${relation.namespace}.${relation.name}`;
    const previous = names.get(relationId);
    if (previous !== undefined && previous !== name && counts.has(previous) && !counts.has(name)) {
      counts.set(name, counts.get(previous) as number); // renamed
      counts.delete(previous);
    }
    names.set(relationId, name);
    return name;
  };
  const add = (name: string | undefined, delta: number): void => {
    if (name === undefined || name.startsWith('pitr.')) return;
    counts.set(name, (counts.get(name) ?? 0) + delta);
  };
  for await (const txn of readTransactions(repo, segments)) {
    if (txn.commitLsn < aligned) continue;
    if (txn.commitLsn > last) break;
    for (const message of txn.messages) {
      switch (message.tag) {
        case 'I':
          add(nameOf(txn.relations, message.relationId), 1);
          break;
        case 'D':
          add(nameOf(txn.relations, message.relationId), -1);
          break;
        case 'U':
          add(nameOf(txn.relations, message.relationId), 0);
          break;
        case 'T':
          for (const id of message.relationIds) {
            const name = nameOf(txn.relations, id);
            if (name !== undefined && !name.startsWith('pitr.')) counts.set(name, 0);
          }
          break;
        case 'M':
          if (message.prefix === MessagePrefix.Ddl) {
            try {
              ddl.push(ddlSummary(parseDdlRecord(message.content)));
            } catch {
              // not ours to judge here: replay already applied it
            }
          }
          break;
        default:
          break;
      }
    }
  }
  return { counts, ddl };
}

/** Ordinary tables (partitions included, partitioned parents not) outside system schemas and pitr's own, as "schema.table". */
async function userTables(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence = 'p'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pitr') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY (n.nspname || '.' || c.relname) COLLATE "C"`,
  );
  return rows.map((r) => r.name);
}

function splitName(name: string): [string, string] {
  const dot = name.indexOf('.');
  return [name.slice(0, dot), name.slice(dot + 1)];
}

async function countRows(client: Client, name: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualifiedName(...splitName(name))}`);
  return Number(rows[0]?.n ?? 0);
}

async function fingerprints(client: Client, tables: readonly string[]): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  await withTransaction(client, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async () => {
    for (const name of tables) {
      const exists = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [qualifiedName(...splitName(name))]);
      if (!exists.rows[0]?.ok) {
        out.set(name, null);
        continue;
      }
      const { rows } = await client.query<{ f: string }>(
        `SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE "C")), '') AS f FROM ${qualifiedName(...splitName(name))} t`,
      );
      out.set(name, rows[0]?.f ?? null);
    }
  });
  return out;
}

/** True when some archived DDL statement drops or renames `name`. */
function droppedOrRenamed(ddl: readonly string[], name: string): boolean {
  const table = splitName(name)[1].toLowerCase();
  return ddl.some((q) => {
    const text = q.toLowerCase();
    return (/\bdrop\s+table\b/.test(text) || /\brename\s+to\b/.test(text)) && text.includes(table);
  });
}

async function databaseExists(admin: Client, database: string): Promise<boolean> {
  return (await admin.query('SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1', [database])).rowCount === 1;
}

/**
 * A disaster-recovery rehearsal: restores into a scratch database, checks every known table is there
 * with the row count the backup and archive imply, measures RTO and RPO, then drops the scratch
 * database (unless `keep`). A failed restore is rethrown, after dropping a scratch database it created.
 */
export async function runDrill(repo: Repository, options: DrillOptions, log: Logger): Promise<DrillReport> {
  const database = databaseOf(options.targetUrl);
  if (!database) throw new PitrError('Usage', 'drill: --target must name a scratch database', 'e.g. --target postgresql://postgres@localhost/pitr_drill');
  const display = redactUrl(options.targetUrl);
  const admin = { config: configForDatabase(options.targetUrl, 'postgres'), display };
  const withAdmin = <T>(fn: (admin: Client) => Promise<T>): Promise<T> => withClient(admin, { application_name: 'pitr drill' }, fn);
  const drop = (): Promise<void> =>
    withAdmin(async (admin) => {
      await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
      log.info({ event: 'drill_dropped', database }, `dropped scratch database "${database}"`);
    });

  const existed = await withAdmin((admin) => databaseExists(admin, database));
  let summary: RestoreSummary;
  try {
    summary = await runRestore(
      repo,
      { targetUrl: options.targetUrl, to: options.to, exclusive: false, jobs: options.jobs ?? 4, dryRun: false, force: false },
      log,
    );
  } catch (error) {
    // never drop a database that was there before: the restore may have refused it for holding data
    if (!existed && !options.keep) await drop().catch(() => undefined);
    throw error;
  }

  const tables: DrillTable[] = [];
  let source: DrillReport['source'];
  try {
    const backup = (await listBackups(repo)).find((b) => b.id === summary.backup.id);
    if (!backup) throw new PitrError('Repository', `backup ${summary.backup.id} used by the restore is no longer in ${repo.storage.location}`);
    const expected = await expectedRows(repo, backup, summary.lastApplied?.commitLsn);
    const scratch = { config: configForDatabase(options.targetUrl), display };
    await withClient(scratch, { options: DECODING_SESSION_OPTIONS, application_name: 'pitr drill' }, async (client) => {
      const present = await userTables(client);
      const names = [...new Set([...expected.counts.keys(), ...present])].sort();
      for (const name of names) {
        const expectedCount = expected.counts.get(name) ?? 0;
        if (!present.includes(name)) {
          if (droppedOrRenamed(expected.ddl, name))
            tables.push({ name, expectedRows: expectedCount, rows: null, ok: true, note: 'dropped or renamed by archived DDL' });
          else tables.push({ name, expectedRows: expectedCount, rows: null, ok: false });
          continue;
        }
        const rows = await countRows(client, name);
        tables.push({ name, expectedRows: expectedCount, rows, ok: rows === expectedCount });
      }
      if (options.source && options.to === 'latest') source = await compareWithSource(client, options.source, tables, summary);
    });
  } catch (error) {
    if (!options.keep) await drop().catch(() => undefined);
    throw error;
  }
  if (!options.keep) await drop();
  const lastTime = summary.lastApplied?.commitTime;
  const rpoSeconds = Math.max(0, (Date.now() * 1000 - Number(parseIsoMicros(lastTime || backupStartTime(summary)))) / 1e6);
  return {
    ok: tables.every((t) => t.ok),
    target: display,
    backup: summary.backup,
    lastApplied: summary.lastApplied,
    rtoSeconds: summary.seconds.total,
    rpoSeconds: Math.round(rpoSeconds * 1000) / 1000,
    tables,
    kept: options.keep,
    restore: { resolved: summary.target.resolved, transactions: summary.transactions, changes: summary.changes, seconds: summary.seconds },
    ...(source ? { source } : {}),
  };
}

/** Without any transaction after the backup, the restored point is the backup's own: its id carries the start time. */
function backupStartTime(summary: RestoreSummary): string {
  const match = /-(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(summary.backup.id);
  if (!match) return new Date().toISOString();
  return `${match[1]}-${match[2]}-${match[3]}T${match[4]}:${match[5]}:${match[6]}Z`;
}

/** Informational: each table's fingerprint in the scratch database against the source's (which may have moved on). */
function compareWithSource(
  scratch: Client,
  sourceConn: NonNullable<DrillOptions['source']>,
  tables: DrillTable[],
  summary: RestoreSummary,
): Promise<DrillReport['source']> {
  return withClient(sourceConn, { options: DECODING_SESSION_OPTIONS, application_name: 'pitr drill' }, async (source) => {
    const { rows } = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const walInsertLsn = rows[0]?.lsn ?? '0/0';
    const names = tables.filter((t) => t.rows !== null).map((t) => t.name);
    const [mine, theirs] = [await fingerprints(scratch, names), await fingerprints(source, names)];
    for (const t of tables) if (t.rows !== null) t.sourceMatches = mine.get(t.name) === theirs.get(t.name);
    const applied = summary.lastApplied ? parseLsn(summary.lastApplied.commitLsn) : undefined;
    const moved = applied === undefined || parseLsn(walInsertLsn) > applied;
    return {
      compared: true,
      walInsertLsn,
      note: moved
        ? `informational: the source's WAL is at ${walInsertLsn}, past the last applied commit${applied !== undefined ? ` ${formatLsn(applied)}` : ''}; differences may be changes not archived yet`
        : 'informational: the source has not moved past the last applied commit',
    };
  });
}
