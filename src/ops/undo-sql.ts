import type { Repository } from '../archive/repository';
import type { ArchivedTransaction } from '../archive/transaction-reader';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import type { RelationMessage, TupleData } from '../archive/pgoutput-decoder';
import { quoteIdent } from '../pg/sql-quote';
import type { SourceConnection } from '../config/connection';
import { PitrError } from '../errors';
import { readManifests, relationText, transactionsOf } from './log-transactions';
import { readUndoForeignKeys } from './undo-foreign-keys';
import { orderUndoSteps, reverseUndoOrder, type UndoOrder, type UndoOrderKind } from './undo-order';
import { changedRelation, keyColumns, undoSteps, type RestoreBefore, type UndoStep } from './undo-steps';
import { restoreBeforeCommand, type RestoreHintContext } from './undo-restore-hint';

export interface UndoWarning {
  xid: number;
  commitTime: string;
  /** The table concerned; for a warning about the script's order, the tables, comma-separated. */
  table: string;
  message: string;
}

export interface UndoResult {
  xid: number;
  commitTime: string;
  commitLsn: string;
  statements: number;
  /** reverse: last change first (no source); foreign-keys: ordered by the source's foreign keys; deferred: last change first under SET CONSTRAINTS ALL DEFERRED. */
  order: UndoOrderKind;
  sql: string;
  warnings: UndoWarning[];
}

export interface UndoOptions {
  /** The archived database: when given, its foreign keys order the statements. */
  source?: SourceConnection;
  /** Where the restore commands in refusals and warnings point (the repository as named, the source's URL). */
  restoreHint?: Omit<RestoreHintContext, 'database'>;
}

/** The archive decodes with these settings (src/capture/replication-stream.ts); values are their text. */
const SESSION_SETTINGS = [
  "SET LOCAL DateStyle = 'ISO, YMD';",
  "SET LOCAL TimeZone = 'UTC';",
  "SET LOCAL IntervalStyle = 'postgres';",
  'SET LOCAL extra_float_digits = 3;',
  "SET LOCAL bytea_output = 'hex';",
  "SET LOCAL lc_monetary = 'C';",
];

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
    if (m.tag === 'I') add(changedRelation(txn, m.relationId), m.newTuple);
    else if (m.tag === 'U') {
      const r = changedRelation(txn, m.relationId);
      if (m.oldTuple) add(r, m.oldTuple.values);
      add(r, m.newTuple);
    } else if (m.tag === 'D') add(changedRelation(txn, m.relationId), m.oldTuple.values);
  }
  return rows;
}

function truncatedTables(txn: ArchivedTransaction): string[] {
  return txn.messages.flatMap((m) => (m.tag === 'T' ? m.relationIds.map((id) => relationText(changedRelation(txn, id))) : []));
}

/** Reads the source's foreign keys among the steps' tables and orders the steps by them. */
async function orderBySource(steps: UndoStep[], source: SourceConnection): Promise<{ order: UndoOrder; missingTables: string[] }> {
  const tables = new Map<string, { namespace: string; name: string }>();
  for (const s of steps) tables.set(s.table, { namespace: s.relation.namespace || 'pg_catalog', name: s.relation.name });
  const { foreignKeys, missingTables } = await readUndoForeignKeys(source, [...tables.values()]);
  return { order: orderUndoSteps(steps, foreignKeys), missingTables };
}

function missingTablesWarning(xid: number, commitTime: string, missing: readonly string[], source: SourceConnection): UndoWarning {
  const tables = [...missing].sort().join(', ');
  const message = `the source ${source.display} has no table ${tables}: the statements are ordered without their foreign keys; check that --source names the archived database`;
  return { xid, commitTime, table: tables, message };
}

/**
 * Without the source nothing says which tables reference which, and plain reverse order fails where a
 * delete cascaded (or set null) through a foreign key: say so when a delete comes with changes to another table.
 */
function unknownForeignKeysWarning(xid: number, commitTime: string, steps: readonly UndoStep[]): UndoWarning | undefined {
  const deleted = new Set(steps.filter((s) => s.op === 'delete').map((s) => s.table));
  const changed = [...new Set(steps.filter((s) => s.op !== 'insert').map((s) => s.table))].sort();
  if (deleted.size === 0 || changed.length < 2) return undefined;
  const message =
    `transaction ${xid} deletes or updates rows of ${changed.join(', ')}: the script reverses them last change first, which fails if a delete ` +
    `cascaded through a foreign key between these tables (a referencing row would come back before the row it references); ` +
    `give --source URL (the archived database) to have the statements ordered by its foreign keys`;
  return { xid, commitTime, table: changed.join(', '), message };
}

function deferredWarning(xid: number, commitTime: string, unordered: NonNullable<UndoOrder['unordered']>, restoreBefore: RestoreBefore): UndoWarning {
  const tables = unordered.tables.join(', ');
  const names = unordered.constraints.map((c) => c.name).join(', ');
  const fixed = unordered.constraints.filter((c) => !c.deferrable);
  const head =
    `transaction ${xid}: its statements cannot be ordered to satisfy the foreign keys of ${tables} (${unordered.reason}; ${names}); ` +
    `the script reverses them last change first under SET CONSTRAINTS ALL DEFERRED`;
  const alters = fixed.map((c) => `ALTER TABLE ${c.declaredOn} ALTER CONSTRAINT ${quoteIdent(c.name)} DEFERRABLE;`).join(' ');
  const message =
    fixed.length === 0
      ? `${head}, which suffices as these constraints are DEFERRABLE`
      : `${head}, which helps only DEFERRABLE constraints: before running it, make them so (${alters}) ` +
        `or restore the rows instead, into a side database: ${restoreBefore(xid, unordered.tables)}`;
  return { xid, commitTime, table: tables, message };
}

function orderLine(order: UndoOrder, statements: number, source: SourceConnection | undefined): string {
  switch (order.kind) {
    case 'reverse':
      return `--   ${statements} statement(s), last change first`;
    case 'foreign-keys':
      return (
        `--   ${statements} statement(s), last change first within each table, ordered by the foreign keys of ${source?.display ?? 'the source'}` +
        (order.reordered ? ' (a referenced row comes back before the rows referencing it, and goes after them)' : '')
      );
    case 'deferred':
      return `--   ${statements} statement(s), last change first, with deferrable constraints deferred to the commit`;
    default: {
      const never: never = order.kind;
      throw new Error(`unknown undo order ${String(never)}`);
    }
  }
}

export async function undoTransaction(repo: Repository, xid: number, options: UndoOptions = {}): Promise<UndoResult> {
  let target: ArchivedTransaction | undefined;
  let touched = new Map<string, string>();
  const tables = new Set<string>();
  const later: UndoWarning[] = [];
  for await (const txn of transactionsOf(repo, await readManifests(repo))) {
    if (!target) {
      if (txn.xid !== xid) continue;
      target = txn;
      touched = touchedRows(txn);
      for (const t of touched.values()) tables.add(t);
      continue;
    }
    const when = { xid: txn.xid, commitTime: formatUnixMicros(txn.commitTime) };
    for (const t of truncatedTables(txn)) if (tables.has(t)) later.push({ ...when, table: t, message: `transaction ${txn.xid} truncated ${t} later` });
    const hits = new Map<string, number>();
    for (const [key, table] of touchedRows(txn)) if (touched.has(key)) hits.set(table, (hits.get(table) ?? 0) + 1);
    for (const [table, n] of hits)
      later.push({ ...when, table, message: `transaction ${txn.xid} (${when.commitTime}) later changed ${n} of the same row(s) of ${table}` });
  }
  if (!target) throw new PitrError('NotFound', `transaction ${xid} is not in the archive`, 'find it with "pitr log" (e.g. pitr log --op delete --table TABLE)');
  const identity = await repo.identity();
  const hint: RestoreHintContext = { repo: repo.storage.location, ...options.restoreHint, ...(identity ? { database: identity.database } : {}) };
  const restoreBefore: RestoreBefore = (x, t) => restoreBeforeCommand(hint, x, t);
  const steps = undoSteps(target, restoreBefore);
  const commitTime = formatUnixMicros(target.commitTime);
  const warnings: UndoWarning[] = [];
  let order: UndoOrder;
  if (options.source) {
    const read = await orderBySource(steps, options.source);
    order = read.order;
    if (read.missingTables.length > 0) warnings.push(missingTablesWarning(target.xid, commitTime, read.missingTables, options.source));
    if (order.unordered) warnings.push(deferredWarning(target.xid, commitTime, order.unordered, restoreBefore));
  } else {
    order = reverseUndoOrder(steps);
    const warning = unknownForeignKeysWarning(target.xid, commitTime, steps);
    if (warning) warnings.push(warning);
  }
  warnings.push(...later);
  const statements = order.steps.map((s) => s.sql);
  const header = [
    `-- pitr undo: reverses transaction xid ${target.xid}`,
    `--   committed at ${commitTime}, commit LSN ${formatLsn(target.commitLsn)}, segment ${target.segment}`,
    orderLine(order, statements.length, options.source),
    // a table name may hold a line break: it must not end the comment
    ...warnings.map((w) => `-- WARNING: ${w.message.replace(/[\r\n]+/g, ' ')}`),
  ];
  const deferred = order.kind === 'deferred' ? ['SET CONSTRAINTS ALL DEFERRED;'] : [];
  const sql = [...header, 'BEGIN;', ...SESSION_SETTINGS, ...deferred, ...statements, 'COMMIT;', ''].join('\n');
  return { xid: target.xid, commitTime, commitLsn: formatLsn(target.commitLsn), statements: statements.length, order: order.kind, sql, warnings };
}
