import type { Client } from 'pg';
import type { DeleteMessage, TupleValue, UpdateMessage } from '../archive/pgoutput-decoder';
import { quoteIdent } from '../pg/sql-quote';
import type { ReplayRelation } from './replay-relation';
import type { TargetColumn } from './target-columns';

type Text = string | null;

const textOf = (value: TupleValue | undefined): Text =>
  value?.kind === 'text' ? value.value : value?.kind === 'binary' ? `\\x${value.value.toString('hex')}` : null;

/**
 * One update or delete of a table without a usable key (REPLICA IDENTITY FULL, or none): the row is
 * found by every column of its old image and exactly one of possibly identical rows is changed, by
 * ctid. Unchanged TOAST values are neither matched nor assigned, GENERATED ALWAYS columns never assigned.
 */
export async function applyRowChange(
  client: Client,
  relation: ReplayRelation,
  target: Map<string, TargetColumn>,
  message: UpdateMessage | DeleteMessage,
): Promise<void> {
  const columns = relation.message.columns;
  const old = message.oldTuple?.values ?? (message.tag === 'U' ? message.newTuple : []);
  const params: Text[] = [];
  const conditions = columns.map((column, i) => {
    if (old[i]?.kind === 'unchanged') return 'true';
    params.push(textOf(old[i]));
    const p = `$${params.length}`;
    const info = target.get(column.name);
    return info?.hasEquality
      ? `${quoteIdent(column.name)} IS NOT DISTINCT FROM ${p}::${info.type}`
      : `${quoteIdent(column.name)}::text IS NOT DISTINCT FROM ${p}`;
  });
  const locate = `ctid = (SELECT ctid FROM ${relation.sql} WHERE ${conditions.join(' AND ')} LIMIT 1)`;
  if (message.tag === 'D') {
    await client.query(`DELETE FROM ${relation.sql} WHERE ${locate}`, params);
    return;
  }
  const sets: string[] = [];
  message.newTuple.forEach((value, i) => {
    const column = columns[i];
    const info = column && target.get(column.name);
    if (!column || value.kind === 'unchanged' || info?.neverUpdated) return;
    // key columns (every column, under REPLICA IDENTITY FULL) are assigned only when they changed
    if ((column.flags & 1) === 1 && (!message.oldTuple || textOf(message.oldTuple.values[i]) === textOf(value))) return;
    params.push(textOf(value));
    sets.push(`${quoteIdent(column.name)} = $${params.length}::${info?.type ?? 'text'}`);
  });
  if (sets.length > 0) await client.query(`UPDATE ${relation.sql} SET ${sets.join(', ')} WHERE ${locate}`, params);
}
