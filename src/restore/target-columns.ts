import type { Client } from 'pg';

export interface TargetColumn {
  name: string;
  /** format_type() of the column, for casts of text values. */
  type: string;
  /** The type has its own `=` operator (else rows are matched on their text form). */
  hasEquality: boolean;
  /** GENERATED ALWAYS (identity or stored expression): never assigned by an UPDATE. */
  neverUpdated: boolean;
}

/**
 * Column facts of target tables, cached until the next DDL. Shared by the replay connections: the
 * catalog only changes through replayed DDL, which runs while no other connection is applying.
 */
export class TargetColumns {
  private readonly cache = new Map<number, Map<string, TargetColumn>>();

  clear(): void {
    this.cache.clear();
  }

  /** The cached columns, without a round trip (undefined when not cached yet). */
  peek(tableOid: number): Map<string, TargetColumn> | undefined {
    return this.cache.get(tableOid);
  }

  /** Asks the catalog through `client`, which must see the table as replay left it. */
  async get(client: Client, tableOid: number): Promise<Map<string, TargetColumn>> {
    const cached = this.cache.get(tableOid);
    if (cached) return cached;
    const { rows } = await client.query<{ name: string; type: string; eq: boolean; always: boolean }>(
      `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, (a.attidentity = 'a' OR a.attgenerated <> '') AS always,
              EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oprname = '=' AND o.oprleft = a.atttypid AND o.oprright = a.atttypid) AS eq
         FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`,
      [tableOid],
    );
    const columns = new Map(rows.map((r) => [r.name, { name: r.name, type: r.type, hasEquality: r.eq, neverUpdated: r.always }]));
    this.cache.set(tableOid, columns);
    return columns;
  }
}
