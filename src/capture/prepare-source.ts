import type { Client } from 'pg';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { DDL_CAPTURE_FUNCTIONS_SQL, DDL_CAPTURE_TRIGGERS } from './ddl-capture-sql';
import { PITR_SCHEMA } from './in-band-sql';
import { parseLsn, type Lsn } from '../pg/lsn';
import { quoteIdent } from '../pg/sql-quote';
import { withTransaction } from '../pg/with-client';

export interface PrepareResult {
  created: string[];
  existing: string[];
  /** Set when this run created the slot. */
  slotCreated?: SlotCreated;
}

/** A slot this run created: it streams exactly the transactions committed from its consistent point on. */
export interface SlotCreated {
  consistentPoint: Lsn;
  /** The source's clock just after the creation, microseconds since the Unix epoch: every transaction it missed committed before. */
  createdAt: bigint;
}

/**
 * Creates the publication, the DDL capture and the slot, each only if missing. The publication comes
 * before the slot (pgoutput looks the publication up as of each change). If the slot cannot be
 * created, what this run created is dropped again, so nothing is left half-made. `onSlotCreated` runs
 * right after the slot is created (recording it in the repository); if it fails, the slot is dropped too,
 * so that the next run creates it again and records it then.
 */
export async function prepareSource(
  client: Client,
  names: { slot: string; publication: string },
  log: Logger,
  openWatcher: () => Promise<Client>,
  onSlotCreated: (slot: SlotCreated) => Promise<void> = async () => undefined,
): Promise<PrepareResult> {
  const created: string[] = [];
  const existing: string[] = [];
  const publication = await client.query<{ puballtables: boolean }>('SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1', [
    names.publication,
  ]);
  const pub = publication.rows[0];
  if (pub && !pub.puballtables) {
    throw new PitrError(
      'SourceConfig',
      `publication "${names.publication}" exists but is not FOR ALL TABLES`,
      `DROP PUBLICATION ${quoteIdent(names.publication)}; then run "pitr init" again, or choose another name with --publication`,
    );
  }
  const slotRow = await client.query<{ plugin: string; database: string; slot_type: string; wal_status: string | null }>(
    'SELECT plugin, database, slot_type, wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name = $1',
    [names.slot],
  );
  const slot = slotRow.rows[0];
  const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
  if (slot && (slot.slot_type !== 'logical' || slot.plugin !== 'pgoutput' || slot.database !== db)) {
    throw new PitrError(
      'SourceConfig',
      `replication slot "${names.slot}" exists but is not a pgoutput slot of database "${db}"`,
      `choose another name with --slot, or drop it with SELECT pg_drop_replication_slot('${names.slot}');`,
    );
  }
  // an invalidated slot can never stream again: calling it ready would hide the gap
  if (slot?.wal_status === 'lost') {
    throw new PitrError(
      'SourceConfig',
      `replication slot "${names.slot}" was invalidated (wal_status lost): the archive has a gap from its last archived commit on`,
      `drop it with SELECT pg_drop_replication_slot('${names.slot}'); then run "pitr init" again and take a new base backup`,
    );
  }
  const triggers = await client.query<{ name: string }>('SELECT evtname AS name FROM pg_catalog.pg_event_trigger WHERE evtname = ANY ($1)', [
    DDL_CAPTURE_TRIGGERS.map((t) => t.name),
  ]);
  const haveTrigger = new Set(triggers.rows.map((r) => r.name));

  await withTransaction(client, async () => {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(PITR_SCHEMA)}`);
    // the functions are replaced every time, so that re-running init brings the capture up to date
    for (const sql of DDL_CAPTURE_FUNCTIONS_SQL) await client.query(sql);
    if (!pub) {
      await client.query(`CREATE PUBLICATION ${quoteIdent(names.publication)} FOR ALL TABLES`);
      created.push(`publication ${names.publication}`);
    } else existing.push(`publication ${names.publication}`);
    for (const trigger of DDL_CAPTURE_TRIGGERS) {
      if (haveTrigger.has(trigger.name)) {
        existing.push(`event trigger ${trigger.name}`);
        continue;
      }
      await client.query(trigger.sql);
      created.push(`event trigger ${trigger.name}`);
    }
  });

  if (slot) {
    existing.push(`replication slot ${names.slot}`);
    return { created, existing };
  }
  let slotCreated: SlotCreated | undefined;
  try {
    const { rows } = await reportWaits(openWatcher, log, () =>
      client.query<{ lsn: string; micros: string }>(
        // clock_timestamp() is read after the function returns: later than every commit the slot missed
        `SELECT lsn::text AS lsn, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS micros
           FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`,
        [names.slot],
      ),
    );
    const row = rows[0] as { lsn: string; micros: string };
    created.push(`replication slot ${names.slot}`);
    slotCreated = { consistentPoint: parseLsn(row.lsn), createdAt: BigInt(row.micros) };
    await onSlotCreated(slotCreated);
  } catch (error) {
    // undo only what this run created
    if (slotCreated) await client.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [names.slot]).catch(() => undefined);
    for (const trigger of DDL_CAPTURE_TRIGGERS)
      if (created.includes(`event trigger ${trigger.name}`))
        await client.query(`DROP EVENT TRIGGER IF EXISTS ${quoteIdent(trigger.name)}`).catch(() => undefined);
    if (created.includes(`publication ${names.publication}`))
      await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(names.publication)}`).catch(() => undefined);
    throw error;
  }
  return { created, existing, slotCreated };
}

/**
 * Creating a logical slot (or one with an exported snapshot) waits for every transaction running at
 * that moment to end. Rather than hang silently, say which backends hold it up, every few seconds.
 */
export async function reportWaits<T>(openWatcher: () => Promise<Client>, log: Logger, work: () => Promise<T>, everyMs = 5000): Promise<T> {
  let watcher: Client | undefined;
  let stopped = false;
  const timer = setInterval(() => {
    void (async () => {
      try {
        watcher ??= await openWatcher();
        if (stopped) return;
        const { rows } = await watcher.query<{ pid: number; age: string; state: string; query: string; usename: string }>(
          `SELECT pid, usename, state, extract(epoch FROM now() - xact_start)::int::text AS age, left(query, 80) AS query
             FROM pg_catalog.pg_stat_activity
            WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            ORDER BY xact_start LIMIT 3`,
        );
        for (const row of rows)
          log.warn(
            { event: 'waiting_for_transaction', backendPid: row.pid, user: row.usename, state: row.state, seconds: Number(row.age), query: row.query },
            `waiting for the transaction of backend ${row.pid} (open ${row.age}s) to finish before the slot can be created`,
          );
      } catch {
        // best effort only
      }
    })();
  }, everyMs);
  try {
    return await work();
  } finally {
    stopped = true;
    clearInterval(timer);
    await watcher?.end().catch(() => undefined);
  }
}
