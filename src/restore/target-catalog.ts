import type { Client } from 'pg';

/** A table of the target database, as replay addresses it. */
export interface TargetTable {
  oid: number;
  schema: string;
  name: string;
  /** Quoted schema-qualified name, for SQL. */
  sql: string;
  /**
   * Changes to different keys commute, so batches may gather changes across kinds and transactions: its
   * only unique index is its key's, it has no exclusion constraint, and the key's columns are of types
   * whose values are equal only when their texts are (integers, oid, uuid, bool, bytea, dates and
   * times, enums; text, varchar and name under a deterministic collation). Where equal keys can be archived with
   * different texts (numeric 1.0 and 1.00, float 0 and -0, citext 'a' and 'A', a case-insensitive
   * collation), a row deleted under one text and inserted under the other must keep that order.
   */
  keysCommute: boolean;
  /** Columns of its primary key, in the key's order (none without one). */
  primaryKey: string[];
}

/**
 * Types whose equal values always have equal texts (text, varchar and name: their collation is checked
 * too). Dates and times qualify because archived text is always printed under the pinned DateStyle and
 * TimeZone (DECODING_SESSION_OPTIONS); interval ('1 day' = '24 hours') and timetz do not.
 */
const EXACT_TYPES = ['int2', 'int4', 'int8', 'oid', 'bool', 'uuid', 'bytea', 'date', 'time', 'timestamp', 'timestamptz', 'text', 'varchar', 'name']
  .map((t) => `'pg_catalog.${t}'::regtype`)
  .join(', ');

/**
 * The target's ordinary tables, read once at the start of replay and again after every replayed
 * schema change, through the connection that applied it (inside its transaction, so it sees the change).
 */
export class TargetCatalog {
  private readonly byOidMap = new Map<number, TargetTable>();
  private readonly byNameMap = new Map<string, TargetTable>();

  private constructor(tables: TargetTable[]) {
    for (const table of tables) {
      this.byOidMap.set(table.oid, table);
      this.byNameMap.set(`${table.schema}\u0000${table.name}`, table);
    }
  }

  static async load(client: Client): Promise<TargetCatalog> {
    const { rows } = await client.query<{ oid: number; schema: string; name: string; sql: string; keys_commute: boolean; primary_key: string[] | null }>(
      `SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql,
              (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique) <= 1
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint x WHERE x.conrelid = c.oid AND x.contype = 'x')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                                  CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indcollation::oid[]) AS k(attnum, coll)
                                  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                                  LEFT JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                                  LEFT JOIN pg_catalog.pg_type base ON base.oid = coalesce(nullif(ty.typbasetype, 0), ty.oid)
                                  LEFT JOIN pg_catalog.pg_collation co ON co.oid = k.coll
                                 WHERE i.indrelid = c.oid AND i.indisunique
                                   AND (a.attnum IS NULL
                                        OR NOT (base.oid IN (${EXACT_TYPES}) OR base.typtype = 'e')
                                        OR (k.coll IS NOT NULL AND k.coll <> 0 AND co.collisdeterministic IS NOT TRUE))) AS keys_commute,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`,
    );
    return new TargetCatalog(
      rows.map((r) => ({ oid: Number(r.oid), schema: r.schema, name: r.name, sql: r.sql, keysCommute: r.keys_commute, primaryKey: r.primary_key ?? [] })),
    );
  }

  byOid(oid: number): TargetTable | undefined {
    return this.byOidMap.get(oid);
  }

  byName(schema: string, name: string): TargetTable | undefined {
    return this.byNameMap.get(`${schema}\u0000${name}`);
  }
}
