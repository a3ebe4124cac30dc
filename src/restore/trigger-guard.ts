import type { Client } from 'pg';
import { PITR_SCHEMA } from '../capture/in-band-sql';

const TABLE = `${PITR_SCHEMA}.restore_triggers`;

/**
 * Replay runs with session_replication_role = replica, so that triggers and foreign keys, which did
 * their work on the source (their rows are in the stream), do not fire again. Triggers and rules
 * enabled ALWAYS or REPLICA fire in replica sessions too: an audit trigger would write its rows twice, a
 * filter would drop archived rows. While replay runs they are disabled, their states kept in
 * pitr.restore_triggers (committed with the change that disabled them), and set back when replay ends.
 * Called at the start and after every replayed schema change, inside its transaction.
 */
export async function holdTriggers(client: Client): Promise<void> {
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (relid oid NOT NULL, kind text NOT NULL, name text NOT NULL, enabled "char" NOT NULL, PRIMARY KEY (relid, kind, name))`,
  );
  // a replayed change that set a held trigger back to firing on origin only: nothing to hold any more
  await client.query(
    `DELETE FROM ${TABLE} h WHERE (h.kind = 'trigger' AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = h.relid AND t.tgname = h.name AND t.tgenabled = 'O'))
                            OR (h.kind = 'rule' AND EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = h.relid AND r.rulename = h.name AND r.ev_enabled = 'O'))`,
  );
  const { rows } = await client.query<{ relid: string; rel: string; kind: 'trigger' | 'rule'; name: string; enabled: string }>(
    `SELECT t.tgrelid::text AS relid, t.tgrelid::regclass::text AS rel, 'trigger' AS kind, t.tgname AS name, t.tgenabled AS enabled
       FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled IN ('A', 'R') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${PITR_SCHEMA}')
     UNION ALL
     SELECT r.ev_class::text, r.ev_class::regclass::text, 'rule', r.rulename, r.ev_enabled
       FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE r.rulename <> '_RETURN' AND r.ev_enabled IN ('A', 'R') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${PITR_SCHEMA}')`,
  );
  for (const row of rows) {
    await client.query(
      `INSERT INTO ${TABLE} (relid, kind, name, enabled) VALUES ($1, $2, $3, $4) ON CONFLICT (relid, kind, name) DO UPDATE SET enabled = excluded.enabled`,
      [row.relid, row.kind, row.name, row.enabled],
    );
    const name = (await client.query<{ q: string }>('SELECT quote_ident($1) AS q', [row.name])).rows[0]?.q ?? row.name;
    await client.query(`ALTER TABLE ${row.rel} DISABLE ${row.kind === 'trigger' ? 'TRIGGER' : 'RULE'} ${name}`);
  }
}

/** Sets every held trigger and rule back to what it was (those that still exist), once replay is done. */
export async function releaseTriggers(client: Client): Promise<void> {
  const exists = await client.query(`SELECT to_regclass('${TABLE}') IS NOT NULL AS ok`);
  if (!(exists.rows[0] as { ok: boolean }).ok) return;
  const { rows } = await client.query<{ rel: string | null; kind: 'trigger' | 'rule'; name: string; enabled: string }>(
    `SELECT CASE WHEN h.kind = 'trigger' THEN (SELECT t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t WHERE t.tgrelid = h.relid AND t.tgname = h.name)
                 ELSE (SELECT r.ev_class::regclass::text FROM pg_catalog.pg_rewrite r WHERE r.ev_class = h.relid AND r.rulename = h.name) END AS rel,
            h.kind, h.name, h.enabled
       FROM ${TABLE} h`,
  );
  for (const row of rows) {
    if (row.rel === null) continue; // dropped by a replayed change
    const name = (await client.query<{ q: string }>('SELECT quote_ident($1) AS q', [row.name])).rows[0]?.q ?? row.name;
    await client.query(`ALTER TABLE ${row.rel} ENABLE ${row.enabled === 'A' ? 'ALWAYS' : 'REPLICA'} ${row.kind === 'trigger' ? 'TRIGGER' : 'RULE'} ${name}`);
  }
  await client.query(`DROP TABLE ${TABLE}`);
}
