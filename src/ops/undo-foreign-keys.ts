import { qualifiedName } from '../pg/sql-quote';
import type { SourceConnection } from '../config/connection';
import { PitrError, messageOf } from '../errors';
import { withClient } from '../pg/with-client';

/** A foreign key between two of the tables a transaction touched (possibly the same table). */
export interface UndoForeignKey {
  name: string;
  /** The referencing and the referenced table, as the archive names them (schema.name; a partition by its own name). */
  child: string;
  childColumns: string[];
  parent: string;
  parentColumns: string[];
  /** The table the constraint is declared on, quoted: where ALTER CONSTRAINT goes (a partitioned table's root). */
  declaredOn: string;
  deferrable: boolean;
}

export interface UndoTable {
  namespace: string;
  name: string;
}

export interface UndoForeignKeys {
  foreignKeys: UndoForeignKey[];
  /** Tables of the transaction the source does not have (schema.name): a sign of the wrong database. */
  missingTables: string[];
}

/**
 * Partitions are archived under their own names while a foreign key is declared once on the partitioned
 * table: each touched table stands for itself and its ancestors, and only top-level constraints
 * (conparentid = 0) are read, so that each appears once.
 */
const FOREIGN_KEYS_SQL = `
WITH touched AS (
  SELECT t.ord, c.oid
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(nsp, rel, ord)
  JOIN pg_namespace n ON n.nspname = t.nsp
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
), lineage AS (
  SELECT ord, oid AS relid FROM touched
  UNION
  SELECT touched.ord, a.relid FROM touched, pg_partition_ancestors(touched.oid) AS a(relid)
)
SELECT con.conname::text AS name, child.ord::int AS child, parent.ord::int AS parent,
  cn.nspname::text AS declared_schema, cc.relname::text AS declared_table, con.condeferrable AS deferrable,
  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, i)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.i) AS child_columns,
  ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.i) AS parent_columns
FROM pg_constraint con
JOIN lineage child ON child.relid = con.conrelid
JOIN lineage parent ON parent.relid = con.confrelid
JOIN pg_class cc ON cc.oid = con.conrelid
JOIN pg_namespace cn ON cn.oid = cc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
ORDER BY child.ord, parent.ord, con.conname`;

const MISSING_TABLES_SQL = `
SELECT t.ord::int AS ord
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(nsp, rel, ord)
WHERE NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = t.nsp AND c.relname = t.rel)
ORDER BY t.ord`;

interface Row {
  name: string;
  child: number;
  parent: number;
  declared_schema: string;
  declared_table: string;
  deferrable: boolean;
  child_columns: string[];
  parent_columns: string[];
}

/**
 * Reads the foreign keys among `tables` (both directions, self-references too) from the source, with
 * read-only catalog queries over a short session, and which of the tables the source does not have.
 */
export async function readUndoForeignKeys(source: SourceConnection, tables: readonly UndoTable[]): Promise<UndoForeignKeys> {
  const settings = { application_name: 'pitr undo', options: '-c default_transaction_read_only=on', statement_timeout: 30_000, query_timeout: 30_000 };
  try {
    return await withClient(source, settings, async (client) => {
      const names = [tables.map((t) => t.namespace), tables.map((t) => t.name)];
      const { rows } = await client.query<Row>(FOREIGN_KEYS_SQL, names);
      const missing = await client.query<{ ord: number }>(MISSING_TABLES_SQL, names);
      const nameOf = (ord: number): string => {
        const t = tables[ord - 1];
        if (!t) throw new PitrError('Internal', `foreign key query returned table number ${ord} of ${tables.length}`);
        return `${t.namespace}.${t.name}`;
      };
      const foreignKeys = rows.map((r) => ({
        name: r.name,
        child: nameOf(r.child),
        childColumns: r.child_columns,
        parent: nameOf(r.parent),
        parentColumns: r.parent_columns,
        declaredOn: qualifiedName(r.declared_schema, r.declared_table),
        deferrable: r.deferrable,
      }));
      return { foreignKeys, missingTables: missing.rows.map((r) => nameOf(r.ord)) };
    });
  } catch (error) {
    if (error instanceof PitrError) throw error;
    throw new PitrError(
      'Connection',
      `undo: cannot read the foreign keys from ${source.display}: ${messageOf(error)}`,
      'check that the source is reachable and that --source names the archived database',
      {
        cause: error,
      },
    );
  }
}
