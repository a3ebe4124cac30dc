import { ddlSummary, parseDdlRecord } from '../archive/ddl-record';
import type { ArchivedTransaction } from '../archive/transaction-reader';
import type { RelationMessage, TupleData, TupleValue } from '../archive/pgoutput-decoder';
import { qualifiedName, quoteIdent, quoteLiteral } from '../pg/sql-quote';
import { PitrError } from '../errors';
import { relationText } from './log-transactions';

/** The statement reversing one archived change, with the row images it moves between. */
export interface UndoStep {
  /** The change's table as schema.name (a partition under its own name). */
  table: string;
  relation: RelationMessage;
  /** What the change did; the statement does the opposite. */
  op: 'insert' | 'update' | 'delete';
  /** The whole row before the change (none for an insert): what the statement puts back. */
  oldRow?: TupleData;
  /** The whole row after the change (none for a delete): what the statement removes or overwrites. */
  newRow?: TupleData;
  sql: string;
}

/**
 * Types whose values have no (or no exact) `=` operator: json, xml and the geometric types. They are
 * compared through their text form, which matches because the script pins the archive's output settings.
 */
const COMPARE_AS_TEXT = new Set([114, 142, 199, 143, 600, 601, 602, 603, 604, 628, 718, 1017, 1018, 1019, 1020, 1027, 629, 719]);

function literal(value: TupleValue | undefined): string {
  if (!value || value.kind === 'null') return 'NULL';
  if (value.kind === 'binary') return quoteLiteral('\\x' + value.value.toString('hex'));
  if (value.kind === 'unchanged') throw new Error('unchanged TOAST value has no literal');
  return quoteLiteral(value.value);
}

/** Columns identifying a row: the replica identity key, or every column under REPLICA IDENTITY FULL (or without a key). */
export function keyColumns(rel: RelationMessage): number[] {
  const key = rel.columns.map((c, i) => ((c.flags & 1) !== 0 ? i : -1)).filter((i) => i >= 0);
  return rel.replicaIdentity !== 'f' && key.length > 0 ? key : rel.columns.map((_, i) => i);
}

function condition(rel: RelationMessage, tuple: TupleData, columns: number[]): string {
  const parts: string[] = [];
  for (const i of columns) {
    const col = rel.columns[i];
    const value = tuple[i];
    if (!col || !value || value.kind === 'unchanged') continue;
    const name = quoteIdent(col.name);
    if (value.kind === 'null') parts.push(`${name} IS NULL`);
    else if (COMPARE_AS_TEXT.has(col.typeOid)) parts.push(`${name}::text = ${literal(value)}`);
    else parts.push(`${name} = ${literal(value)}`);
  }
  return parts.length > 0 ? parts.join(' AND ') : 'true';
}

/** One row only (a table under REPLICA IDENTITY FULL may hold duplicates). */
function oneRow(table: string, where: string): string {
  return `ctid = (SELECT ctid FROM ${table} WHERE ${where} LIMIT 1)`;
}

/** Builds the complete `pitr restore` command bringing back tables (or the whole database) as they were just before a transaction. */
export type RestoreBefore = (xid: number, tables?: readonly string[]) => string;

function needFullRow(txn: ArchivedTransaction, rel: RelationMessage, what: string, restoreBefore: RestoreBefore): PitrError {
  const table = relationText(rel);
  return new PitrError(
    'Usage',
    `undo: transaction ${txn.xid} ${what} rows of ${table}, but the archive holds only their key, not the old row: ${table} did not have REPLICA IDENTITY FULL when it ran`,
    `the old values cannot be recovered from the archive; restore the table as it was just before the transaction into a side database with: ${restoreBefore(txn.xid, [table])} ` +
      `(then copy the rows back); for future changes run: ALTER TABLE ${qualifiedName(rel.namespace, rel.name)} REPLICA IDENTITY FULL`,
  );
}

export function changedRelation(txn: ArchivedTransaction, id: number): RelationMessage {
  const r = txn.relations.get(id);
  if (!r) throw new PitrError('Integrity', `transaction ${txn.xid} (segment ${txn.segment}) changes relation ${id} without a relation message`);
  return r;
}

function ddlQuery(content: Buffer): string {
  try {
    return ddlSummary(parseDdlRecord(content)).replace(/\s+/g, ' ').trim().slice(0, 200);
  } catch {
    return 'DDL';
  }
}

/**
 * The statements reversing each change of `txn`, in the transaction's own order (the caller decides the
 * order they run in). Refuses what cannot be reversed exactly from the archive: a TRUNCATE, DDL, an
 * update or delete of a table whose old rows were not archived whole.
 */
export function undoSteps(txn: ArchivedTransaction, restoreBefore: RestoreBefore): UndoStep[] {
  for (const m of txn.messages) {
    if (m.tag === 'T') {
      const names = m.relationIds.map((id) => relationText(changedRelation(txn, id)));
      throw new PitrError(
        'Usage',
        `undo: transaction ${txn.xid} truncates ${names.join(', ')}; a TRUNCATE cannot be undone from the archive (it records no rows)`,
        `restore the table as it was just before the transaction into a side database with: ${restoreBefore(txn.xid, names)} (then copy the rows back)`,
      );
    }
    if (m.tag === 'M' && m.prefix === 'pitr.ddl')
      throw new PitrError(
        'Usage',
        `undo: transaction ${txn.xid} contains DDL (${ddlQuery(m.content)}); schema changes cannot be undone automatically`,
        `reverse the DDL by hand, or restore the database as it was just before the transaction into a side database with: ${restoreBefore(txn.xid)}`,
      );
  }
  const steps: UndoStep[] = [];
  for (const m of txn.messages) {
    if (m.tag === 'I') {
      const r = changedRelation(txn, m.relationId);
      const table = qualifiedName(r.namespace, r.name);
      const sql = `DELETE FROM ${table} WHERE ${oneRow(table, condition(r, m.newTuple, keyColumns(r)))};`;
      steps.push({ table: relationText(r), relation: r, op: 'insert', newRow: m.newTuple, sql });
    } else if (m.tag === 'D') {
      const r = changedRelation(txn, m.relationId);
      if (m.oldTuple.kind !== 'O') throw needFullRow(txn, r, 'deletes', restoreBefore);
      const table = qualifiedName(r.namespace, r.name);
      const cols = r.columns.map((c) => quoteIdent(c.name)).join(', ');
      const values = r.columns.map((_, i) => literal(m.oldTuple.values[i])).join(', ');
      const sql = `INSERT INTO ${table} (${cols}) OVERRIDING SYSTEM VALUE VALUES (${values});`;
      steps.push({ table: relationText(r), relation: r, op: 'delete', oldRow: m.oldTuple.values, sql });
    } else if (m.tag === 'U') {
      const r = changedRelation(txn, m.relationId);
      if (!m.oldTuple || m.oldTuple.kind !== 'O') throw needFullRow(txn, r, 'updates', restoreBefore);
      const old = m.oldTuple.values;
      const table = qualifiedName(r.namespace, r.name);
      const sets = r.columns
        .map((c, i) => (old[i]?.kind === 'unchanged' ? null : `${quoteIdent(c.name)} = ${literal(old[i])}`))
        .filter((s): s is string => s !== null);
      if (sets.length === 0) continue;
      const sql = `UPDATE ${table} SET ${sets.join(', ')} WHERE ${oneRow(table, condition(r, m.newTuple, keyColumns(r)))};`;
      // an unchanged TOASTed value is the old one: the new row is whole with it filled in
      const newRow = m.newTuple.map((v, i) => (v.kind === 'unchanged' ? (old[i] ?? v) : v));
      steps.push({ table: relationText(r), relation: r, op: 'update', oldRow: old, newRow, sql });
    }
  }
  return steps;
}
