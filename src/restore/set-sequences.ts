import type { Client } from 'pg';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-quote';
import type { HeartbeatSequences } from './replay-input';

/**
 * Sequences from the last heartbeat applied, then never below the largest value their owning column
 * holds (a heartbeat can be up to one interval old).
 */
export async function setSequences(client: Client, fromHeartbeat: HeartbeatSequences | undefined, tables: Set<string> | undefined): Promise<void> {
  for (const [schema, name, value] of fromHeartbeat ?? []) {
    const seq = quoteLiteral(qualifiedName(schema, name));
    const exists = await client.query(`SELECT to_regclass(${seq}) IS NOT NULL AS ok`);
    if (!(exists.rows[0] as { ok: boolean }).ok) continue;
    if (value === null) continue;
    await client.query(`SELECT setval(${seq}, ${BigInt(value).toString()}, true)`);
  }
  const { rows } = await client.query<{ seq: string; tab_schema: string; tab: string; col: string }>(
    `SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) AS seq, tn.nspname AS tab_schema, t.relname AS tab, a.attname AS col
       FROM pg_catalog.pg_depend d
       JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
       JOIN pg_catalog.pg_class t ON t.oid = d.refobjid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`,
  );
  for (const row of rows) {
    if (tables && !tables.has(`${row.tab_schema}.${row.tab}`)) continue;
    await client.query(
      `SELECT setval(${quoteLiteral(row.seq)}, m) FROM (SELECT max(${quoteIdent(row.col)})::bigint AS m FROM ${qualifiedName(row.tab_schema, row.tab)}) x
        WHERE m IS NOT NULL AND m > (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM ${row.seq})`,
    );
  }
}
