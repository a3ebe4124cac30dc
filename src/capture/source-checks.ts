import type { Client } from 'pg';
import type { ReplicationSession } from '../pg/replication-session';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-quote';

/** One failed requirement: what is wrong and the exact fix. */
export interface CheckFailure {
  problem: string;
  fix: string;
  /** The fix as SQL that `pitr init --apply-fixes` may run (set only where it takes effect at once, without a restart). */
  apply?: string;
}

export interface SourceFacts {
  serverVersionNum: number;
  serverVersion: string;
  database: string;
  user: string;
  largeObjects: number;
}

export async function sourceFacts(client: Client): Promise<SourceFacts> {
  const { rows } = await client.query<{ num: string; version: string; db: string; usr: string; lo: string }>(
    `SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version,
            current_database() AS db, current_user AS usr,
            (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)::text AS lo`,
  );
  const row = rows[0] as { num: string; version: string; db: string; usr: string; lo: string };
  return { serverVersionNum: Number(row.num), serverVersion: row.version, database: row.db, user: row.usr, largeObjects: Number(row.lo) };
}

/**
 * Everything the source needs before archiving can start, checked without changing anything.
 * `slot` is ours: if it exists already it does not need a free slot.
 */
export async function checkSource(client: Client, slot: string): Promise<CheckFailure[]> {
  const failures: CheckFailure[] = [];
  const facts = await sourceFacts(client);
  if (facts.serverVersionNum < 140000) {
    failures.push({
      problem: `server version ${facts.serverVersion} is too old: PostgreSQL 14 or newer is required`,
      fix: 'upgrade the server to PostgreSQL 14 or newer',
    });
  }
  const settings = await client.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders')`,
  );
  const setting = (name: string): string => settings.rows.find((r) => r.name === name)?.setting ?? '';
  if (setting('wal_level') !== 'logical') {
    failures.push({
      problem: `wal_level is "${setting('wal_level')}", logical decoding needs "logical"`,
      fix: "ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL",
    });
  }
  const role = await client.query<{ rolsuper: boolean; rolreplication: boolean; rds: boolean }>(
    `SELECT rolsuper, rolreplication,
            EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = 'rds_superuser' AND pg_has_role(current_user, r.oid, 'member')) AS rds
       FROM pg_catalog.pg_roles WHERE rolname = current_user`,
  );
  const r = role.rows[0];
  if (r && !r.rolsuper && !r.rds) {
    failures.push({
      problem: `role "${facts.user}" is not a superuser: the DDL event trigger and a FOR ALL TABLES publication need one`,
      fix: `ALTER ROLE ${quoteIdent(facts.user)} SUPERUSER; (or run "pitr init" once as a superuser)`,
    });
  }
  if (r && !r.rolsuper && !r.rolreplication) {
    failures.push({ problem: `role "${facts.user}" may not replicate`, fix: `ALTER ROLE ${quoteIdent(facts.user)} REPLICATION;` });
  }
  const slots = await client.query<{ used: string; ours: boolean; senders: string }>(
    `SELECT (SELECT count(*) FROM pg_catalog.pg_replication_slots)::text AS used,
            EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1) AS ours,
            (SELECT count(*) FROM pg_catalog.pg_stat_replication)::text AS senders`,
    [slot],
  );
  const s = slots.rows[0];
  if (s && !s.ours && Number(s.used) >= Number(setting('max_replication_slots'))) {
    failures.push({
      problem: `no free replication slot (${s.used} of max_replication_slots = ${setting('max_replication_slots')} in use)`,
      fix: 'ALTER SYSTEM SET max_replication_slots = <more>; then restart PostgreSQL, or drop an unused slot with pg_drop_replication_slot()',
    });
  }
  if (s && Number(s.senders) >= Number(setting('max_wal_senders'))) {
    failures.push({
      problem: `no free WAL sender (${s.senders} of max_wal_senders = ${setting('max_wal_senders')} in use)`,
      fix: 'ALTER SYSTEM SET max_wal_senders = <more>; then restart PostgreSQL',
    });
  }
  failures.push(...(await tablesWithoutReplicaIdentity(client)));
  return failures;
}

/**
 * Tables whose UPDATEs and DELETEs could not be published (and would then fail on the source, under a
 * FOR ALL TABLES publication): replica identity NOTHING, DEFAULT without a primary key, or USING INDEX
 * naming an index that is gone. The fix is DEFAULT where a primary key exists, else FULL.
 */
export async function tablesWithoutReplicaIdentity(client: Client): Promise<CheckFailure[]> {
  const result = await client.query<{ schema: string; name: string; identity: 'd' | 'n' | 'i'; has_key: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relreplident AS identity,
            EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_key
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence = 'p'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pitr') AND n.nspname NOT LIKE 'pg_toast%'
        AND (c.relreplident = 'n'
             OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
             OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
      ORDER BY 1, 2`,
  );
  return result.rows.map((t) => {
    const table = qualifiedName(t.schema, t.name);
    const cannot = 'its UPDATEs and DELETEs cannot be archived and fail on the source';
    const problem =
      t.identity === 'n'
        ? `table ${table} has REPLICA IDENTITY NOTHING${t.has_key ? ' although it has a primary key' : ' and no primary key'}: ${cannot}`
        : t.identity === 'i'
          ? `table ${table} has REPLICA IDENTITY USING INDEX, but that index no longer exists: ${cannot}`
          : `table ${table} has no primary key and no usable replica identity: ${cannot}`;
    const apply = `ALTER TABLE ${table} REPLICA IDENTITY ${t.has_key ? 'DEFAULT' : 'FULL'}`;
    return { problem, fix: `${apply};${t.has_key ? '' : '  -- or add a primary key'}`, apply };
  });
}

/** Whether the publication exists; also on a replication session (no bound parameters there). */
export async function publicationExists(session: ReplicationSession, publication: string): Promise<boolean> {
  const { rows } = await session.query(`SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = ${quoteLiteral(publication)}`);
  return rows.length > 0;
}
