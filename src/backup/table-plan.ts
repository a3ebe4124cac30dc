import type { Client } from 'pg';
import type { SequenceValue } from '../archive/backup-manifest';
import { PITR_SCHEMA } from '../capture/in-band-sql';
import { qualifiedName, quoteIdent } from '../pg/sql-quote';
import { PitrError } from '../errors';

export interface TablePlan {
  oid: number;
  schema: string;
  name: string;
  /** Columns copied: every column but generated ones (which the target computes itself). */
  columns: string[];
  /** On-disk size when the snapshot was taken, for progress and chunking. */
  bytes: number;
  /** ctid page ranges [from, to) of each chunk; `to` null = to the end. */
  chunks: { fromPage: number; toPage: number | null }[];
}

/**
 * Every table holding user data, as seen by the snapshot: ordinary tables and leaf partitions
 * (partitioned parents hold no rows), not unlogged or temporary ones, not the project's own schema.
 * A table larger than `chunkBytes` is split into chunks of about that size, their number a multiple
 * of `jobs`, so that the sessions copying one big table finish it together.
 */
export async function planTables(client: Client, chunkBytes: number, jobs = 1): Promise<TablePlan[]> {
  const { rows } = await client.query<{ oid: number; schema: string; name: string; bytes: string; block: string; columns: string[] }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, pg_catalog.pg_relation_size(c.oid)::text AS bytes,
            current_setting('block_size') AS block,
            ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                   ORDER BY a.attnum)::text[] AS columns
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence = 'p'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, n.nspname, c.relname`,
    [PITR_SCHEMA],
  );
  return rows.map((row) => {
    const bytes = Number(row.bytes);
    const pages = Math.ceil(bytes / Number(row.block));
    const pagesPerChunk = chunkPages(pages, Math.max(1, Math.floor(chunkBytes / Number(row.block))), jobs);
    const chunks: TablePlan['chunks'] = [];
    for (let from = 0; from + pagesPerChunk < pages; from += pagesPerChunk) chunks.push({ fromPage: from, toPage: from + pagesPerChunk });
    // the last chunk is open-ended: pages added after the size was read hold no rows the snapshot sees,
    // but an open end can never miss one
    chunks.push({ fromPage: chunks.length * pagesPerChunk, toPage: null });
    return { oid: row.oid, schema: row.schema, name: row.name, columns: row.columns, bytes, chunks };
  });
}

/** Pages per chunk: about `maxPages`, fewer so that a split table's chunks are a multiple of `jobs`. */
function chunkPages(pages: number, maxPages: number, jobs: number): number {
  if (pages <= maxPages) return maxPages;
  const chunks = Math.ceil(Math.ceil(pages / maxPages) / jobs) * jobs;
  return Math.max(1, Math.ceil(pages / chunks));
}

/** The COPY statement for one chunk; a single-chunk table is copied whole (no TID scan). */
export function chunkCopySql(table: TablePlan, chunk: TablePlan['chunks'][number]): string {
  const columns = table.columns.map(quoteIdent).join(', ');
  const relation = qualifiedName(table.schema, table.name);
  if (table.chunks.length === 1) return `COPY ${relation} (${columns}) TO STDOUT`;
  const upper = chunk.toPage === null ? '' : ` AND ctid < '(${chunk.toPage},0)'::tid`;
  return `COPY (SELECT ${columns} FROM ONLY ${relation} WHERE ctid >= '(${chunk.fromPage},0)'::tid${upper}) TO STDOUT`;
}

/**
 * Sequence values. Sequences are not transactional: these are the values when read, under the snapshot's session.
 * pg_sequences shows last_value NULL both for a never-used sequence and for one the role may not read: the latter
 * is refused, or the restore would silently reset the sequence to its start.
 */
export async function readSequences(client: Client): Promise<SequenceValue[]> {
  const { rows } = await client.query<{ schema: string; name: string; last_value: string | null; readable: boolean }>(
    `SELECT schemaname AS schema, sequencename AS name, last_value::text AS last_value,
            pg_catalog.has_sequence_privilege(pg_catalog.format('%I.%I', schemaname, sequencename), 'SELECT, USAGE') AS readable
       FROM pg_catalog.pg_sequences WHERE schemaname <> $1 ORDER BY 1, 2`,
    [PITR_SCHEMA],
  );
  const unreadable = rows.find((r) => !r.readable);
  if (unreadable)
    throw new PitrError(
      'SourceConfig',
      `permission denied to read sequence ${qualifiedName(unreadable.schema, unreadable.name)}`,
      `GRANT SELECT ON SEQUENCE ${qualifiedName(unreadable.schema, unreadable.name)} TO <backup role>; or run the backup as a superuser`,
    );
  return rows.map((r) => ({ schema: r.schema, name: r.name, lastValue: r.last_value }));
}
