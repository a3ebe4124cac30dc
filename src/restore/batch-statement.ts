import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { quoteIdent } from '../pg/sql-quote';
import { PitrError } from '../errors';
import type { TableBatch } from './table-batch';
import type { TargetColumn } from './target-columns';

/**
 * Applies one batch as one statement. Inserts go through COPY (identity columns take the archived
 * values, as COPY always does); updates and deletes join the table with unnest() over the batch's
 * text[] parameters, each value cast by the target column's type. Columns whose type has no `=`
 * operator are matched on their text form.
 */
export async function applyBatch(client: Client, target: Map<string, TargetColumn>, batch: TableBatch): Promise<void> {
  const relation = batch.relation;
  const columns = relation.message.columns;
  const column = (i: number): TargetColumn => {
    const name = columns[i]?.name as string;
    const found = target.get(name);
    if (!found) throw new PitrError('Internal', `column ${quoteIdent(name)} of ${relation.sql} is missing in the target`);
    return found;
  };
  if (batch.kind === 'insert') {
    // a table without columns takes its rows as empty lines, with no column list at all
    const list = columns.length === 0 ? '' : ` (${columns.map((c) => quoteIdent(c.name)).join(', ')})`;
    const sql = `COPY ${relation.sql}${list} FROM STDIN`;
    await pipeline(Readable.from((batch.copy as NonNullable<TableBatch['copy']>).toChunks()), client.query(copyFrom(sql)));
    return;
  }
  const keyIndexes = relation.keyIndexes;
  const params: Buffer[] = [];
  const aliases: string[] = [];
  const bind = (arrayIndex: number): string => {
    params.push(batch.arrayParameter(arrayIndex));
    aliases.push(`c${params.length - 1}`);
    return `v.c${params.length - 1}`;
  };
  const match = keyIndexes.map((i, a) => {
    const info = column(i);
    const value = bind(a);
    return info.hasEquality ? `t.${quoteIdent(info.name)} = ${value}::${info.type}` : `t.${quoteIdent(info.name)}::text = ${value}`;
  });
  let head: string;
  if (batch.kind === 'delete') {
    head = `DELETE FROM ${relation.sql} AS t USING`;
  } else {
    // an UPDATE cannot assign GENERATED ALWAYS columns; they cannot change on the source either
    const sets: string[] = [];
    batch.setIndexes.forEach((i, j) => {
      const info = column(i);
      if (!info.neverUpdated) sets.push(`${quoteIdent(info.name)} = ${bind(keyIndexes.length + j)}::${info.type}`);
    });
    if (sets.length === 0) return;
    head = `UPDATE ${relation.sql} AS t SET ${sets.join(', ')} FROM`;
  }
  const source = `unnest(${params.map((_, p) => `$${p + 1}::text[]`).join(', ')}) AS v(${aliases.join(', ')})`;
  await client.query(`${head} ${source} WHERE ${match.join(' AND ')}`, params);
}
