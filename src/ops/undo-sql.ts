import type { Repository } from '../archive/repository';
import type { ArchivedTransaction } from '../archive/transaction-reader';
import { formatLsn } from '../capture/lsn';
import { formatUnixMicros } from '../capture/pg-time';
import type { RelationMessage, TupleData, TupleValue } from '../capture/pgoutput-decoder';
import { qualifiedName, quoteIdent, quoteLiteral } from '../capture/sql-quote';
import { PitrError } from '../errors';
import { readManifests, relationText, transactionsOf } from './log-transactions';

export interface UndoWarning {
  xid: number;
  commitTime: string;
  table: string;
  message: string;
}

export interface UndoResult {
  xid: number;
  commitTime: string;
  commitLsn: string;
  statements: number;
  sql: string;
  warnings: UndoWarning[];
}

/**
 * Types whose values have no (or no exact) `=` operator: json, xml and the geometric types. They are
 * compared through their text form, which matches because the script pins the archive's output settings.
 */
const COMPARE_AS_TEXT = new Set([114, 142, 199, 143, 600, 601, 602, 603, 604, 628, 718, 1017, 1018, 1019, 1020, 1027, 629, 719]);

/** The archive decodes with these settings (src/capture/replication-stream.ts); values are their text. */
const SESSION_SETTINGS = [
  "SET LOCAL DateStyle = 'ISO, YMD';",
  "SET LOCAL TimeZone = 'UTC';",
  "SET LOCAL IntervalStyle = 'postgres';",
  'SET LOCAL extra_float_digits = 3;',
  "SET LOCAL bytea_output = 'hex';",
  "SET LOCAL lc_monetary = 'C';",
];

function literal(value: TupleValue | undefined): string {
  if (!value || value.kind === 'null') return 'NULL';
  if (value.kind === 'binary') return quoteLiteral('\\x' + value.value.toString('hex'));
  if (value.kind === 'unchanged') throw new Error('unchanged TOAST value has no literal');
  return quoteLiteral(value.value);
}

/** Columns identifying a row: the replica identity key, or every column under REPLICA IDENTITY FULL (or without a key). */
function keyColumns(rel: RelationMessage): number[] {
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

function needFullRow(txn: ArchivedTransaction, rel: RelationMessage, what: string): PitrError {
  const table = relationText(rel);
  return new PitrError(
    'Usage',
    `undo: transaction ${txn.xid} ${what} rows of ${table}, but the archive holds only their key, not the old row: ${table} did not have REPLICA IDENTITY FULL when it ran`,
    `the old values cannot be recovered from the archive (restore them with "pitr restore --to xid:${txn.xid} --tables ${table}" into another database); for future changes run: ALTER TABLE ${qualifiedName(rel.namespace, rel.name)} REPLICA IDENTITY FULL`,
  );
}

function rel(txn: ArchivedTransaction, id: number): RelationMessage {
  const r = txn.relations.get(id);
  if (!r) throw new PitrError('Integrity', `transaction ${txn.xid} (segment ${txn.segment}) changes relation ${id} without a relation message`);
  return r;
}

/** Statements reversing each change of `txn`, last change first. */
export function undoStatements(txn: ArchivedTransaction): string[] {
  const statements: string[] = [];
  for (const m of txn.messages) {
    if (m.tag === 'T') {
      const names = m.relationIds.map((id) => relationText(rel(txn, id))).join(', ');
      throw new PitrError(
        'Usage',
        `undo: transaction ${txn.xid} truncates ${names}; a TRUNCATE cannot be undone from the archive (it records no rows)`,
        `restore the table as it was before: pitr restore --to xid:${txn.xid} --tables ${names} into another database`,
      );
    }
    if (m.tag === 'M' && m.prefix === 'pitr.ddl')
      throw new PitrError(
        'Usage',
        `undo: transaction ${txn.xid} contains DDL (${ddlQuery(m.content)}); schema changes cannot be undone automatically`,
        `restore to just before it with pitr restore --to xid:${txn.xid}, or reverse the DDL by hand`,
      );
  }
  for (const m of [...txn.messages].reverse()) {
    if (m.tag === 'I') {
      const r = rel(txn, m.relationId);
      const table = qualifiedName(r.namespace, r.name);
      statements.push(`DELETE FROM ${table} WHERE ${oneRow(table, condition(r, m.newTuple, keyColumns(r)))};`);
    } else if (m.tag === 'D') {
      const r = rel(txn, m.relationId);
      if (m.oldTuple.kind !== 'O') throw needFullRow(txn, r, 'deletes');
      const table = qualifiedName(r.namespace, r.name);
      const cols = r.columns.map((c) => quoteIdent(c.name)).join(', ');
      const values = r.columns.map((_, i) => literal(m.oldTuple.values[i])).join(', ');
      statements.push(`INSERT INTO ${table} (${cols}) OVERRIDING SYSTEM VALUE VALUES (${values});`);
    } else if (m.tag === 'U') {
      const r = rel(txn, m.relationId);
      if (!m.oldTuple || m.oldTuple.kind !== 'O') throw needFullRow(txn, r, 'updates');
      const old = m.oldTuple.values;
      const table = qualifiedName(r.namespace, r.name);
      const sets = r.columns
        .map((c, i) => (old[i]?.kind === 'unchanged' ? null : `${quoteIdent(c.name)} = ${literal(old[i])}`))
        .filter((s): s is string => s !== null);
      if (sets.length === 0) continue;
      statements.push(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${oneRow(table, condition(r, m.newTuple, keyColumns(r)))};`);
    }
  }
  return statements;
}

function ddlQuery(content: Buffer): string {
  try {
    const q = (JSON.parse(content.toString('utf8')) as { query?: unknown }).query;
    return typeof q === 'string' ? q.replace(/\s+/g, ' ').trim().slice(0, 200) : 'DDL';
  } catch {
    return 'DDL';
  }
}

/** Identities of the rows a transaction touched, as "table\0json(values)" keys. */
function touchedRows(txn: ArchivedTransaction): Map<string, string> {
  const rows = new Map<string, string>();
  const add = (r: RelationMessage, tuple: TupleData | undefined): void => {
    if (!tuple) return;
    const cols = keyColumns(r);
    const key = cols.map((i) => [r.columns[i]?.name, tuple[i]?.kind === 'text' ? tuple[i].value : tuple[i]?.kind === 'null' ? null : '?']);
    if (key.some(([, v]) => v === '?')) return;
    rows.set(`${relationText(r)}\0${JSON.stringify(key)}`, relationText(r));
  };
  for (const m of txn.messages) {
    if (m.tag === 'I') add(rel(txn, m.relationId), m.newTuple);
    else if (m.tag === 'U') {
      const r = rel(txn, m.relationId);
      if (m.oldTuple) add(r, m.oldTuple.values);
      add(r, m.newTuple);
    } else if (m.tag === 'D') add(rel(txn, m.relationId), m.oldTuple.values);
  }
  return rows;
}

function truncatedTables(txn: ArchivedTransaction): string[] {
  return txn.messages.flatMap((m) => (m.tag === 'T' ? m.relationIds.map((id) => relationText(rel(txn, id))) : []));
}

export async function undoTransaction(repo: Repository, xid: number): Promise<UndoResult> {
  let target: ArchivedTransaction | undefined;
  let touched = new Map<string, string>();
  const tables = new Set<string>();
  const warnings: UndoWarning[] = [];
  for await (const txn of transactionsOf(repo, await readManifests(repo))) {
    if (!target) {
      if (txn.xid !== xid) continue;
      target = txn;
      touched = touchedRows(txn);
      for (const t of touched.values()) tables.add(t);
      continue;
    }
    const later = { xid: txn.xid, commitTime: formatUnixMicros(txn.commitTime) };
    for (const t of truncatedTables(txn)) if (tables.has(t)) warnings.push({ ...later, table: t, message: `transaction ${txn.xid} truncated ${t} later` });
    const hits = new Map<string, number>();
    for (const [key, table] of touchedRows(txn)) if (touched.has(key)) hits.set(table, (hits.get(table) ?? 0) + 1);
    for (const [table, n] of hits)
      warnings.push({ ...later, table, message: `transaction ${txn.xid} (${later.commitTime}) later changed ${n} of the same row(s) of ${table}` });
  }
  if (!target) throw new PitrError('NotFound', `transaction ${xid} is not in the archive`, 'find it with "pitr log" (e.g. pitr log --op delete --table TABLE)');
  const statements = undoStatements(target);
  const commitTime = formatUnixMicros(target.commitTime);
  const header = [
    `-- pitr undo: reverses transaction xid ${target.xid}`,
    `--   committed at ${commitTime}, commit LSN ${formatLsn(target.commitLsn)}, segment ${target.segment}`,
    `--   ${statements.length} statement(s), last change first`,
    ...warnings.map((w) => `-- WARNING: ${w.message}`),
  ];
  const sql = [...header, 'BEGIN;', ...SESSION_SETTINGS, ...statements, 'COMMIT;', ''].join('\n');
  return { xid: target.xid, commitTime, commitLsn: formatLsn(target.commitLsn), statements: statements.length, sql, warnings };
}
