import type { Client } from 'pg';
import type { Repository } from '../archive/repository';
import { findPgTool } from '../backup/pg-tools';
import { Progress } from '../backup/progress';
import { parseLsn } from '../pg/lsn';
import { DECODING_SESSION_OPTIONS } from '../pg/session-settings';
import { connectSource } from '../pg/connect';
import { withClient, withClients, type PgEndpoint } from '../pg/with-client';
import { qualifiedName } from '../pg/sql-quote';
import { configForDatabase, databaseOf, redactUrl } from '../config/connection';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { backupTableEntries, loadTables, restoreSchemaSection, restoreSequences } from './load-backup';
import { planRestore, type RestorePlan } from './plan';
import { summarisePlan, type PlanSummary } from './plan-summary';
import { throwIfInterrupted } from './interrupted';
import { replaySegments } from './replay';
import { createStateTable, readState, setPhase } from './restore-state';
import { setSequences } from './set-sequences';
import { releaseTriggers } from './trigger-guard';
import { prepareTargetDatabase } from './target-database';
import { describeTarget, parseTarget } from './target';
import { checkTableSelection, qualifiedTableName } from './table-selection';

export interface RestoreOptions {
  targetUrl: string;
  to: string;
  exclusive: boolean;
  tables?: string[];
  jobs: number;
  dryRun: boolean;
  force: boolean;
  pgDump?: string;
  /** SIGINT/SIGTERM: stop, roll back what is not committed, exit 130; the same command continues. */
  signal?: AbortSignal;
}

export interface RestoreSummary {
  database: string;
  target: { kind: string; input: string; resolved: string };
  backup: { id: string; alignedLsn: string };
  lastApplied: { xid: number | null; commitLsn: string; commitTime: string } | null;
  transactions: number;
  changes: number;
  seconds: { total: number; load: number; replay: number };
  resumed: boolean;
  plan?: PlanSummary;
}

/**
 * Restores the database as it was at a point of the archive: the newest usable backup, then the
 * archived transactions after its aligned LSN in commit order, up to the target. Each segment is
 * applied in one transaction of the target together with the restore's progress, and committed only
 * once the segment's checksum is verified; a re-run continues after the last committed segment.
 */
export async function runRestore(repo: Repository, options: RestoreOptions, log: Logger): Promise<RestoreSummary> {
  const started = Date.now();
  const database = databaseOf(options.targetUrl);
  if (!database) throw new PitrError('Usage', 'restore: --target must name a database', 'e.g. --target postgresql://postgres@localhost/shop_restored');
  const display = redactUrl(options.targetUrl);
  const server = { config: configForDatabase(options.targetUrl, 'postgres'), display };
  return withClient(server, { application_name: 'pitr restore' }, async (admin) => {
    const spec = await parseTarget(options.to, admin);
    const plan = await planRestore(repo, spec, options.exclusive);
    if (options.tables) await checkTables(repo, plan, options.tables, options.pgDump);
    const target = { kind: spec.kind, input: describeTarget(spec), resolved: plan.resolved };
    const base: Omit<RestoreSummary, 'seconds'> = {
      database,
      target,
      backup: { id: plan.backup.id, alignedLsn: plan.backup.alignedLsn },
      lastApplied: null,
      transactions: 0,
      changes: 0,
      resumed: false,
    };
    if (options.dryRun) {
      return {
        ...base,
        seconds: { total: (Date.now() - started) / 1000, load: 0, replay: 0 },
        plan: summarisePlan(plan),
      };
    }
    await refuseSource(repo, admin, database, options.force);
    const endpoint = { config: configForDatabase(options.targetUrl), display };
    const targetKey = `${target.input}${options.exclusive ? ' exclusive' : ''}`;
    await prepareTargetDatabase(admin, endpoint, database, {
      backupId: plan.backup.id,
      targetKey,
      someTables: options.tables !== undefined,
      force: options.force,
    });
    return withClient(endpoint, { options: DECODING_SESSION_OPTIONS }, (client) => restoreInto({ repo, client, endpoint, plan, options, log, base, started }));
  });
}

/** Every `--tables` entry must name a table of the backup (its schema included) or of the archive's segments. */
async function checkTables(repo: Repository, plan: RestorePlan, tables: readonly string[], pgDump: string | undefined): Promise<void> {
  const known = new Set([...plan.backup.tables.map((t) => `${t.schema}.${t.name}`), ...plan.segments.flatMap((s) => s.tables)]);
  await checkTableSelection(tables, known, async (names) => {
    const pgRestore = await findPgTool('pg_restore', Math.floor(plan.backup.serverVersionNum / 10000), pgDump);
    const entries = await backupTableEntries(repo, plan.backup, pgRestore);
    return new Set(
      names.filter((name) => {
        const dot = name.indexOf('.');
        return entries.some((line) => line.includes(` TABLE ${name.slice(0, dot)} ${name.slice(dot + 1)} `));
      }),
    );
  });
}

/** `--tables` names partitioned tables too: their changes arrive under the partitions' names. */
async function expandPartitions(client: Client, tables: Set<string>): Promise<Set<string>> {
  const expanded = new Set(tables);
  for (const name of tables) {
    const { rows } = await client.query<{ name: string }>(
      `SELECT n.nspname || '.' || c.relname AS name FROM pg_catalog.pg_partition_tree(to_regclass($1)) t
         JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
      [qualifiedName(...(name.split('.', 2) as [string, string]))],
    );
    for (const row of rows) expanded.add(row.name);
  }
  return expanded;
}

/** With `--tables`, the other tables are not restored: drop what the schema load created for them. */
async function dropUnselected(client: Client, tables: Set<string>): Promise<void> {
  const { rows } = await client.query<{ name: string; qualified: string }>(
    `SELECT n.nspname || '.' || c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pitr') AND n.nspname NOT LIKE 'pg_toast%'`,
  );
  for (const row of rows) if (!tables.has(row.name)) await client.query(`DROP TABLE IF EXISTS ${row.qualified} CASCADE`);
}

/**
 * With `--tables`, the foreign keys between restored tables are added once the others are gone; one
 * that points at (or belongs to) a table not restored fails with "undefined table" and is left out.
 */
async function addForeignKeys(client: Client, statements: string[], log: Logger): Promise<void> {
  for (const statement of statements) {
    const table = /^ALTER TABLE(?:\s+ONLY)?\s+(\S+)/i.exec(statement)?.[1] ?? '';
    const owner = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [table]);
    if (owner.rows[0]?.ok === false) continue; // a foreign key of a table not restored
    try {
      await client.query(statement);
    } catch (error) {
      if ((error as { code?: string }).code !== '42P01') throw error;
      const name = /ADD CONSTRAINT\s+("(?:[^"]|"")+"|\S+)/i.exec(statement)?.[1] ?? statement.slice(0, 80);
      log.warn(
        { event: 'foreign_key_left_out', constraint: name, table },
        `foreign key ${name} of ${table} left out: it refers to a table that is not restored (${(error as Error).message})`,
      );
    }
  }
}

/**
 * Restoring over the archived database itself would destroy the source: refused, unless --force says
 * replacing it is meant. A database with a logical replication slot (the archiver's, or another
 * subscriber's) is refused even then: PostgreSQL cannot drop it, and the slot's consumer would lose its stream.
 */
async function refuseSource(repo: Repository, admin: Client, database: string, force: boolean): Promise<void> {
  const slots = await admin.query<{ slot_name: string; active: boolean }>(
    "SELECT slot_name::text, active FROM pg_catalog.pg_replication_slots WHERE slot_type = 'logical' AND database = $1 ORDER BY slot_name",
    [database],
  );
  const identity = await repo.identity();
  const system = await admin.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_catalog.pg_control_system()').catch(() => undefined);
  const isSource = identity !== null && identity.database === database && system?.rows[0]?.id === identity.systemIdentifier;
  if (slots.rows.length > 0) {
    const names = slots.rows.map((r) => `${r.slot_name}${r.active ? ' (active)' : ''}`).join(', ');
    throw new PitrError(
      'Usage',
      `target database "${database}" ${isSource ? 'is the archived source itself and ' : ''}has logical replication slot ${names}: it cannot be restored over`,
      `restore into a new database name (e.g. --target ending in /${database}_restored) and copy rows back; ` +
        'to replace it really, stop its archiver or subscriber and drop the slot first (SELECT pg_drop_replication_slot(NAME)), then run with --force',
    );
  }
  if (isSource && !force) {
    throw new PitrError(
      'Usage',
      `target database "${database}" is the archived source itself: restoring would replace its current data`,
      'restore into a side database and copy rows back, or add --force if replacing the source is really meant',
    );
  }
}

/** What restoreInto works with: the target database's session, where to open more, and the plan. */
interface RestoreInto {
  repo: Repository;
  /** A session of the target database, with the archive's session settings. */
  client: Client;
  /** Where further sessions of the target database connect (load jobs, replay lanes, pg_restore). */
  endpoint: PgEndpoint;
  plan: RestorePlan;
  options: RestoreOptions;
  log: Logger;
  base: Omit<RestoreSummary, 'seconds'>;
  /** Date.now() when the restore started. */
  started: number;
}

async function restoreInto({ repo, client, endpoint, plan, options, log, base, started }: RestoreInto): Promise<RestoreSummary> {
  const targetKey = `${base.target.input}${options.exclusive ? ' exclusive' : ''}`;
  let tables = options.tables ? new Set(options.tables.map(qualifiedTableName)) : undefined;
  let state = await readState(client);
  const resumed = state?.phase === 'replay' || state?.phase === 'done';
  const loadStarted = Date.now();
  if (!state) {
    const pgRestore = await findPgTool('pg_restore', Math.floor(plan.backup.serverVersionNum / 10000), options.pgDump);
    log.info({ event: 'restore_load', backup: plan.backup.id, alignedLsn: plan.backup.alignedLsn }, `loading backup ${plan.backup.id}`);
    // pg_restore connects on its own, through the environment (no password on its command line)
    await restoreSchemaSection(repo, plan.backup, pgRestore, endpoint.config, 'pre-data');
    await createStateTable(client, plan.backup.id, targetKey);
    if (tables) tables = await expandPartitions(client, tables);
    const chosen = plan.backup.tables.filter((t) => !tables || tables.has(`${t.schema}.${t.name}`));
    const unknown = [...(tables ?? [])].filter((name) => !plan.backup.tables.some((t) => `${t.schema}.${t.name}` === name));
    if (unknown.length) log.warn({ event: 'unknown_tables', tables: unknown }, `not in the backup (created later, or misspelled): ${unknown.join(', ')}`);
    await withClients(endpoint, { options: DECODING_SESSION_OPTIONS }, options.jobs - 1, async (extra) => {
      const sessions = [client, ...extra];
      const progress = new Progress(
        'load',
        chosen.length,
        chosen.reduce((n, t) => n + t.rawBytes, 0),
        log,
      );
      await loadTables(repo, plan.backup, sessions, chosen, {
        beforeChunk: () => throwIfInterrupted(options.signal, 'while loading the backup'),
        chunkLoaded: (_table, chunk, tableDone) => {
          progress.addBytes(chunk.rawBytes);
          if (tableDone) progress.itemDone();
        },
      });
      progress.finish();
    });
    await restoreSequences(client, plan.backup.sequences);
    const leftOutKeys = await restoreSchemaSection(repo, plan.backup, pgRestore, endpoint.config, 'post-data', {
      withoutForeignKeys: tables !== undefined,
      jobs: options.jobs,
    });
    if (tables) {
      await dropUnselected(client, tables);
      await addForeignKeys(client, leftOutKeys, log);
    }
    await setPhase(client, 'replay');
    state = await readState(client);
  }
  if (tables && resumed) tables = await expandPartitions(client, tables);
  const loadSeconds = (Date.now() - loadStarted) / 1000;
  const replayStarted = Date.now();
  const pending = plan.segments.filter((s) => !state?.lastCommitLsn || parseLsn(s.lastCommitLsn) > parseLsn(state.lastCommitLsn));
  const progress = new Progress(
    'replay',
    pending.length,
    pending.reduce((n, s) => n + s.rawBytes, 0),
    log,
    { unit: 'segments' },
  );
  const result = await replaySegments({
    repo,
    plan,
    client,
    connect: () => connectSource(endpoint.config, endpoint.display, { options: DECODING_SESSION_OPTIONS }),
    jobs: options.jobs,
    resumeAfter: state?.lastCommitLsn ? parseLsn(state.lastCommitLsn) : undefined,
    tables,
    log,
    ...(options.signal ? { signal: options.signal } : {}),
    onSegmentRead: (segment) => {
      progress.addBytes(segment.rawBytes);
      progress.itemDone();
    },
  });
  progress.finish();
  await releaseTriggers(client);
  await setSequences(client, { before: result.sequences, after: result.sequencesAfter }, tables, log);
  await setPhase(client, 'done');
  const final = await readState(client);
  return {
    ...base,
    resumed,
    lastApplied: final?.lastCommitLsn
      ? { xid: final.lastXid === null ? null : Number(final.lastXid), commitLsn: final.lastCommitLsn, commitTime: final.lastCommitTime ?? '' }
      : null,
    transactions: final?.transactions ?? result.transactions,
    changes: final?.changes ?? result.changes,
    seconds: { total: (Date.now() - started) / 1000, load: loadSeconds, replay: (Date.now() - replayStarted) / 1000 },
  };
}
