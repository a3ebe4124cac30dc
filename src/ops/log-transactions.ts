import type { Repository } from '../archive/repository';
import { MessagePrefix } from '../archive/segment-format';
import type { SegmentManifest } from '../archive/segment-manifest';
import { readSlotCreations } from '../archive/slot-creation';
import { readTransactions, type ArchivedTransaction } from '../archive/transaction-reader';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros, parseIsoMicros } from '../pg/pg-time';
import { quoteLiteral } from '../pg/sql-quote';
import { ddlSummary, parseDdlRecord } from '../archive/ddl-record';
import type { RelationMessage, TupleData, TupleValue } from '../archive/pgoutput-decoder';
import { PitrError } from '../errors';
import { ArchiveView, type SegmentSelection } from '../archive/archive-view';

export const LOG_OPS = ['insert', 'update', 'delete', 'truncate', 'ddl'] as const;
export type LogOp = (typeof LOG_OPS)[number];
type RowOp = Exclude<LogOp, 'ddl'>;

export interface LogFilter {
  /** schema.table, or a bare table name matching it in any schema. */
  table?: string;
  op?: LogOp;
  /** Unix microseconds, inclusive. */
  since?: bigint;
  until?: bigint;
  xid?: number;
  rows?: boolean;
}

/** A column value in row images: its text, null for NULL, or {unchanged: true} for an unchanged TOAST value. */
export type RowValue = string | null | { unchanged: true };

export interface RowChange {
  table: string;
  op: RowOp;
  /** Old row image: the whole row under REPLICA IDENTITY FULL ('O'), only the key columns otherwise ('K'). */
  old?: Record<string, RowValue>;
  oldKind?: 'K' | 'O';
  new?: Record<string, RowValue>;
}

export interface TableCounts {
  table: string;
  insert: number;
  update: number;
  delete: number;
  truncate: number;
}

export interface LogEntry {
  xid: number;
  commitTime: string;
  commitLsn: string;
  endLsn: string;
  segment: string;
  tables: TableCounts[];
  /** Statement text of each DDL command captured in the transaction. */
  ddl: string[];
  /** Names of the restore points (`pitr mark`) the transaction carries. */
  marks: string[];
  /** The transaction is the archiver's heartbeat (sequence values, the newest commit moving on an idle source). */
  heartbeat: boolean;
  rows?: RowChange[];
}

export function parseLogOp(text: string | undefined): LogOp | undefined {
  if (text === undefined) return undefined;
  const op = text.trim().toLowerCase();
  if (!(LOG_OPS as readonly string[]).includes(op)) throw new PitrError('Usage', `log: unknown --op "${text}"`, `--op must be one of: ${LOG_OPS.join(', ')}`);
  return op as LogOp;
}

/**
 * Parses an ISO 8601 time (also with a space instead of T, an hour-only offset like +01, or a bare
 * date); without a zone it is taken as UTC. Keeps microseconds.
 */
export function parseTimeOption(name: string, text: string, command = 'log'): bigint {
  let t = text.trim();
  if (/^\d{4}-\d\d-\d\d$/.test(t)) t += 'T00:00:00';
  t = t.replace(/^(\d{4}-\d\d-\d\d)[ T]/, '$1T');
  if (/T\d\d:\d\d$/.test(t)) t += ':00';
  t = t.replace(/\s*(UTC|GMT)$/i, 'Z').replace(/\s+([+-]\d\d(:?\d\d)?)$/, '$1');
  if (/[+-]\d\d$/.test(t)) t += ':00';
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(t)) t += 'Z';
  try {
    return parseIsoMicros(t);
  } catch {
    throw new PitrError('Usage', `${command}: --${name} "${text}" is not a time`, 'use ISO 8601, e.g. 2026-11-22T10:41:59.5Z or "2026-11-22 10:41:59.5+01"');
  }
}

export function parseXidOption(text: string): number {
  const t = text.trim().replace(/^xid:/, '');
  if (!/^\d+$/.test(t) || Number(t) > 0xffffffff) throw new PitrError('Usage', `--xid "${text}" is not a transaction id`, 'e.g. --xid 912345');
  return Number(t);
}

export function relationText(rel: RelationMessage): string {
  return `${rel.namespace || 'pg_catalog'}.${rel.name}`;
}

export function tableMatches(filter: string, table: string): boolean {
  return filter.includes('.') ? filter === table : table.slice(table.indexOf('.') + 1) === filter;
}

function valueOf(value: TupleValue | undefined): RowValue {
  if (!value || value.kind === 'null') return null;
  if (value.kind === 'unchanged') return { unchanged: true };
  if (value.kind === 'binary') return '\\x' + value.value.toString('hex');
  return value.value;
}

export function rowImage(rel: RelationMessage, tuple: TupleData, keyOnly = false): Record<string, RowValue> {
  const row: Record<string, RowValue> = {};
  rel.columns.forEach((col, i) => {
    if (!keyOnly || (col.flags & 1) !== 0) row[col.name] = valueOf(tuple[i]);
  });
  return row;
}

function relationOf(txn: ArchivedTransaction, id: number): RelationMessage {
  const rel = txn.relations.get(id);
  if (!rel) throw new PitrError('Integrity', `transaction ${txn.xid} (segment ${txn.segment}) changes relation ${id} without a relation message`);
  return rel;
}

/** Counts, DDL and (optionally) row images of one transaction. */
export function summarize(txn: ArchivedTransaction, withRows: boolean): LogEntry {
  const tables = new Map<string, TableCounts>();
  const ddl: string[] = [];
  const marks: string[] = [];
  let heartbeat = false;
  const rows: RowChange[] = [];
  const count = (table: string, op: RowOp): void => {
    let c = tables.get(table);
    if (!c) tables.set(table, (c = { table, insert: 0, update: 0, delete: 0, truncate: 0 }));
    c[op]++;
  };
  for (const m of txn.messages) {
    switch (m.tag) {
      case 'I': {
        const rel = relationOf(txn, m.relationId);
        count(relationText(rel), 'insert');
        if (withRows) rows.push({ table: relationText(rel), op: 'insert', new: rowImage(rel, m.newTuple) });
        break;
      }
      case 'U': {
        const rel = relationOf(txn, m.relationId);
        count(relationText(rel), 'update');
        if (withRows)
          rows.push({
            table: relationText(rel),
            op: 'update',
            ...(m.oldTuple ? { old: rowImage(rel, m.oldTuple.values, m.oldTuple.kind === 'K'), oldKind: m.oldTuple.kind } : {}),
            new: rowImage(rel, m.newTuple),
          });
        break;
      }
      case 'D': {
        const rel = relationOf(txn, m.relationId);
        count(relationText(rel), 'delete');
        if (withRows)
          rows.push({ table: relationText(rel), op: 'delete', old: rowImage(rel, m.oldTuple.values, m.oldTuple.kind === 'K'), oldKind: m.oldTuple.kind });
        break;
      }
      case 'T':
        for (const id of m.relationIds) {
          const table = relationText(relationOf(txn, id));
          count(table, 'truncate');
          if (withRows) rows.push({ table, op: 'truncate' });
        }
        break;
      case 'M':
        if (m.prefix === MessagePrefix.Ddl) ddl.push(ddlText(m.content));
        else if (m.prefix === MessagePrefix.Mark) marks.push(markName(m.content));
        else if (m.prefix === MessagePrefix.Heartbeat) heartbeat = true;
        break;
      default:
        break;
    }
  }
  return {
    xid: txn.xid,
    commitTime: formatUnixMicros(txn.commitTime),
    commitLsn: formatLsn(txn.commitLsn),
    endLsn: formatLsn(txn.endLsn),
    segment: txn.segment,
    tables: [...tables.values()],
    ddl,
    marks,
    heartbeat,
    ...(withRows ? { rows } : {}),
  };
}

function markName(content: Buffer): string {
  try {
    const parsed = JSON.parse(content.toString('utf8')) as { name?: unknown };
    return typeof parsed.name === 'string' ? parsed.name : '?';
  } catch {
    return '?';
  }
}

function ddlText(content: Buffer): string {
  try {
    return ddlSummary(parseDdlRecord(content));
  } catch {
    return 'DDL';
  }
}

export function entryMatches(entry: LogEntry, filter: LogFilter): boolean {
  if (filter.xid !== undefined && entry.xid !== filter.xid) return false;
  const tables = filter.table ? entry.tables.filter((t) => tableMatches(filter.table as string, t.table)) : entry.tables;
  if (filter.op === 'ddl') {
    if (entry.ddl.length === 0) return false;
    if (filter.table) {
      const bare = filter.table.includes('.') ? filter.table.slice(filter.table.indexOf('.') + 1) : filter.table;
      return tables.length > 0 || entry.ddl.some((q) => q.includes(bare));
    }
    return true;
  }
  if (filter.table && tables.length === 0) return false;
  if (filter.op && !tables.some((t) => t[filter.op as RowOp] > 0)) return false;
  return true;
}

/** Whether a segment can hold a matching transaction, judged from its manifest alone. */
export function manifestMayMatch(manifest: SegmentManifest, filter: LogFilter): boolean {
  if (filter.since !== undefined && parseIsoMicros(manifest.lastCommitTime) < filter.since) return false;
  if (filter.until !== undefined && parseIsoMicros(manifest.firstCommitTime) > filter.until) return false;
  if (manifest.transactions === 0) return false;
  if (filter.op === 'ddl') return manifest.ddl > 0;
  if (filter.op && manifest.changes[filter.op] === 0) return false;
  if (filter.table && !manifest.tables.some((t) => tableMatches(filter.table as string, t))) return false;
  return true;
}

/**
 * The segment manifests in LSN order, with the chain checked (from the index's summaries: no manifest is
 * read for that); `select` keeps only the pages that may hold what is wanted. A gap recorded when the
 * slot was re-created is known and does not stop reading: each transaction is read from its own segment.
 */
export async function readManifests(repo: Repository, select: SegmentSelection = {}, opened?: ArchiveView): Promise<SegmentManifest[]> {
  const view = opened ?? (await ArchiveView.open(repo));
  const broken = (await view.gaps(await readSlotCreations(repo), [])).find((g) => g.cause === 'broken-chain');
  if (broken) {
    const manifest = (await view.segments({})).find((m) => m.name === broken.before) as SegmentManifest;
    throw new PitrError(
      'Integrity',
      `segment chain broken before ${manifest.name}: it names ${manifest.previous?.name ?? 'no'} previous segment, the archive has ${broken.after ?? '?'}`,
      'run "pitr verify" to list missing or foreign segments',
    );
  }
  return view.segments(select);
}

/** Transactions of the given segments (each segment carries its own relation messages), in commit order. */
export async function* transactionsOf(repo: Repository, manifests: SegmentManifest[]): AsyncGenerator<ArchivedTransaction> {
  for (const manifest of manifests) yield* readTransactions(repo, [manifest]);
}

export interface LogResult {
  entries: LogEntry[];
  segments: { total: number; read: number };
}

export async function logTransactions(repo: Repository, filter: LogFilter): Promise<LogResult> {
  const view = await ArchiveView.open(repo);
  const manifests = await readManifests(
    repo,
    {
      ...(filter.since !== undefined ? { since: filter.since } : {}),
      ...(filter.until !== undefined ? { until: filter.until } : {}),
    },
    view,
  );
  const candidates = manifests.filter((m) => manifestMayMatch(m, filter));
  const entries: LogEntry[] = [];
  for await (const txn of transactionsOf(repo, candidates)) {
    if (filter.since !== undefined && txn.commitTime < filter.since) continue;
    if (filter.until !== undefined && txn.commitTime > filter.until) continue;
    if (filter.xid !== undefined && txn.xid !== filter.xid) continue;
    const entry = summarize(txn, filter.rows === true);
    if (entryMatches(entry, filter)) entries.push(entry);
  }
  return { entries, segments: { total: view.count, read: candidates.length } };
}

function rowValueText(value: RowValue): string {
  if (value === null) return 'NULL';
  if (typeof value === 'object') return '<unchanged>';
  return quoteLiteral(value);
}

function rowText(row: Record<string, RowValue>): string {
  return Object.entries(row)
    .map(([k, v]) => `${k}=${rowValueText(v)}`)
    .join(' ');
}

/** One line per transaction, then (with rows) one indented line per change. */
export function formatLogEntry(entry: LogEntry): string {
  const parts = entry.tables.map((t) => {
    const ops = (['insert', 'update', 'delete', 'truncate'] as const).filter((op) => t[op] > 0).map((op) => `${op} ${t[op]}`);
    return `${t.table}: ${ops.join(', ')}`;
  });
  if (entry.ddl.length > 0) parts.push(`ddl ${entry.ddl.length}: ${entry.ddl.map((q) => q.replace(/\s+/g, ' ').trim()).join('; ')}`);
  for (const mark of entry.marks) parts.push(`mark ${mark}`);
  if (entry.heartbeat && parts.length === 0) parts.push('heartbeat');
  let text = `${entry.commitTime}  xid ${entry.xid}  ${entry.commitLsn}  ${parts.join('; ') || '(no changes)'}\n`;
  for (const row of entry.rows ?? []) {
    if (row.op === 'truncate') text += `    truncate ${row.table}\n`;
    else if (row.op === 'insert') text += `    insert ${row.table}: ${rowText(row.new ?? {})}\n`;
    else if (row.op === 'delete') text += `    delete ${row.table}${row.oldKind === 'K' ? ' (key)' : ''}: ${rowText(row.old ?? {})}\n`;
    else text += `    update ${row.table}: ${row.old ? `old${row.oldKind === 'K' ? ' key' : ''} ${rowText(row.old)} -> ` : ''}new ${rowText(row.new ?? {})}\n`;
  }
  return text;
}
