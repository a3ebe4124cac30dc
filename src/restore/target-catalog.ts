import type { Client } from 'pg';

/** A table of the target database, as replay addresses it. */
export interface TargetTable {
  oid: number;
  schema: string;
  name: string;
  /** Quoted schema-qualified name, for SQL. */
  sql: string;
  /**
   * Its only unique index is its key's and it has no exclusion constraint: changes to different keys
   * commute, so batches may gather changes across kinds and transactions.
   */
  keyOnlyUnique: boolean;
  /** Columns of its primary key, in the key's order (none without one). */
  primaryKey: string[];
}

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
    const { rows } = await client.query<{ oid: number; schema: string; name: string; sql: string; key_only_unique: boolean; primary_key: string[] | null }>(
      `SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql,
              (SELECT count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique) <= 1
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint x WHERE x.conrelid = c.oid AND x.contype = 'x') AS key_only_unique,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`,
    );
    return new TargetCatalog(
      rows.map((r) => ({ oid: Number(r.oid), schema: r.schema, name: r.name, sql: r.sql, keyOnlyUnique: r.key_only_unique, primaryKey: r.primary_key ?? [] })),
    );
  }

  byOid(oid: number): TargetTable | undefined {
    return this.byOidMap.get(oid);
  }

  byName(schema: string, name: string): TargetTable | undefined {
    return this.byNameMap.get(`${schema}\u0000${name}`);
  }
}
