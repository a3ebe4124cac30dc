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
 * found by every column of its old image, each matched by its exact text (never by a looser equality),
 * and exactly one of possibly identical rows is changed, by ctid. Unchanged TOAST values are neither matched nor assigned, GENERATED ALWAYS columns never assigned.
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
    const value = old[i];
    const name = quoteIdent(column.name);
    if (value?.kind === 'unchanged') return 'true';
    if (value === undefined || value.kind === 'null') return `${name} IS NULL`;
    params.push(textOf(value));
    const p = `$${params.length}::text`;
    // Exactly the archived value: its text as the target's output function prints it (format's %s; a
    // cast to text is not that for every type: char(n) drops padding, inet adds /32). The type's own =
    // is looser (numeric 1.0 = 1.00, float -0 = 0, citext 'a' = 'A'), so it only lets an index help.
    // COLLATE "C": bytes, whatever the column's collation (a nondeterministic one finds 'ä' and 'a\u0308' equal)
    const exact = `format('%s', ${name}) COLLATE "C" = ${p}`;
    const info = target.get(column.name);
    return info?.hasEquality ? `${name} = ${p}::${info.type} AND ${exact}` : exact;
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
