import { pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

/**
 * Streams the rows of `selectSql` in one database into `table` in another, as
 * `psql -c "\copy (SELECT ...) TO STDOUT" | psql -c "\copy table FROM STDIN"` does: the text format
 * carries every value exactly.
 */
export async function copyRows(source: Client, selectSql: string, target: Client, table: string): Promise<number> {
  const reading = source.query(copyTo(`COPY (${selectSql}) TO STDOUT`));
  const writing = target.query(copyFrom(`COPY ${table} FROM STDIN`));
  await pipeline(reading, writing);
  return Number(writing.rowCount ?? 0);
}
