import type { RelationMessage, TupleData, TupleValue } from '../archive/pgoutput-decoder';
import type { UndoForeignKey } from './undo-foreign-keys';
import type { UndoStep } from './undo-steps';

/**
 * In what order the reversing statements run.
 *
 * Terminology: "change t" is the t-th change of the transaction (0-based, source order) and "step t" the
 * statement reversing it; S_t is the state before change t ran (S_0 before the transaction, S_n after
 * it, which is where the undo starts). For a foreign key, the "key" of a referenced (parent) row is the
 * value of the referenced columns, and a referencing (child) row "references" a key when none of its
 * foreign key columns is null (MATCH SIMPLE; MATCH FULL allows nothing else).
 *
 * Why not plain reverse order: reversed, the steps walk back through S_n, S_n-1, ..., S_0, but only the
 * states between statements of the source satisfied the foreign keys. Inside one statement they need
 * not: `DELETE FROM parent` archives the parent row first and the rows its ON DELETE CASCADE (or SET
 * NULL) removed after it, so reversed, a child comes back before its parent and fails the check the
 * server makes at the end of every statement. The archive does not record statement boundaries; the
 * foreign keys, read from the source, say which rows depend on which.
 *
 * What the order keeps:
 *
 * 1. Within each table, the steps run last change first. Then at any moment every table is exactly as
 *    it was at some point of the source's history (as far as the transaction's rows go): table X at
 *    S_τX, where τX is the earliest change of X whose step has run (n while none has). That keeps
 *    everything that lives inside one table right: several changes to the same row, a key deleted and
 *    inserted again, unique values moving between rows, and the WHERE of each step finding the row as
 *    its change left it.
 *
 * 2. Between a parent and a child table (or a table and itself), from the row images: a key held by the
 *    parent over an interval [i, j) of source changes (made to exist by change i, removed by change j;
 *    i = -1 if it existed before the transaction, j = n if it still exists after) and a child row's
 *    reference to it over [p, q) give two rules:
 *      - step j before step q: the key comes back before the reference to it does (a delete that
 *        cascaded re-inserts the parent first; a SET NULL is set back after the parent is back);
 *      - step p before step i: the reference goes before the key does (an inserted parent is deleted
 *        after its inserted children; a key changed and then referenced is changed back after the
 *        reference is gone).
 *    (A step that is both ends of a rule, a row referencing itself, needs none: the server checks at
 *    the end of the statement.) The interval [i, j) is the key's life in which the reference was made
 *    (or the next one, when the source made the reference first within one statement); the reference
 *    must end in that same life, otherwise the transaction removed and re-created a key while it stayed
 *    referenced, which only deferred constraints allow, and no order is claimed.
 *
 * Why that suffices: with (1), child and parent are at S_τC and S_τP. The reference exists now iff
 * p < τC <= q, that is step q has run (or q = n) and step p has not (or p = -1). By the first rule step
 * j has run too, so τP <= j; by the second, step i has not, so τP > i: the parent is within [i, j) and
 * holds the key. So after every statement every reference among the transaction's rows has its key,
 * which is what the server checks. Nor does any statement set off a referential action (CASCADE, SET
 * NULL): when a step removes a key, the references made in that key's life are already gone, and those
 * of its other lives cannot exist while this one does.
 *
 * Assumed: rows the transaction did not touch do not reference keys it removed or made (they could not
 * have, between its statements, unless a key was removed and re-created within one statement), and the
 * source's text output of equal keys is equal on both sides (true of the integer, text and uuid keys
 * foreign keys are usually made of; where it is not, the script fails as a whole, in its transaction).
 *
 * Within those rules the steps keep reverse source order wherever they can (a topological sort that
 * always takes the latest change ready). A cycle — rows of a self-referencing table that reference each
 * other, an ON UPDATE CASCADE key change, rows of two tables referencing each other — leaves no such
 * order: then the whole script falls back to reverse source order under SET CONSTRAINTS ALL DEFERRED,
 * and the constraints on the cycle are named.
 */
export type UndoOrderKind = 'reverse' | 'foreign-keys' | 'deferred';

export interface UndoOrder {
  kind: UndoOrderKind;
  /** The steps in the order they run. */
  steps: UndoStep[];
  /** Whether that differs from plain reverse order. */
  reordered: boolean;
  /** Set when `deferred`: what could not be ordered. */
  unordered?: { tables: string[]; constraints: UndoForeignKey[]; reason: string };
}

/** Plain reverse source order: what the archive alone allows. */
export function reverseUndoOrder(steps: readonly UndoStep[]): UndoOrder {
  return { kind: 'reverse', steps: [...steps].reverse(), reordered: false };
}

interface Edge {
  to: number;
  /** The foreign key the edge comes from; undefined for a table's own order. */
  fk: number | undefined;
}

interface Life {
  start: number;
  end: number;
}

class Unorderable extends Error {
  constructor(
    readonly fk: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

function valueText(v: TupleValue | undefined): string | null {
  if (!v || v.kind === 'null') return null;
  if (v.kind === 'binary') return '\\x' + v.value.toString('hex');
  if (v.kind === 'unchanged') return '\u0000unchanged';
  return v.value;
}

/** The key a row holds in `columns`, or undefined when one of them is null. */
function keyOf(row: TupleData | undefined, columns: readonly number[]): string | undefined {
  if (!row) return undefined;
  const values = columns.map((i) => valueText(row[i]));
  return values.includes(null) ? undefined : JSON.stringify(values);
}

function imageOf(row: TupleData): string {
  return JSON.stringify(row.map(valueText));
}

/** Orders `steps` (given in source order) by the foreign keys among their tables; see the comment above. */
export function orderUndoSteps(steps: readonly UndoStep[], foreignKeys: readonly UndoForeignKey[]): UndoOrder {
  const n = steps.length;
  const edges: Edge[][] = steps.map(() => []);
  const addEdge = (from: number, to: number, fk: number | undefined): void => {
    if (from !== to) edges[from]?.push({ to, fk });
  };
  const byTable = new Map<string, number[]>();
  steps.forEach((s, t) => {
    const positions = byTable.get(s.table);
    if (positions) positions.push(t);
    else byTable.set(s.table, [t]);
  });
  for (const positions of byTable.values())
    for (let k = positions.length - 1; k > 0; k--) addEdge(positions[k] as number, positions[k - 1] as number, undefined);

  try {
    foreignKeys.forEach((fk, f) => addForeignKeyEdges(steps, byTable, fk, f, addEdge));
  } catch (error) {
    if (!(error instanceof Unorderable)) throw error;
    const fk = foreignKeys[error.fk] as UndoForeignKey;
    return fallBack(steps, { tables: [...new Set([fk.child, fk.parent])], constraints: [fk], reason: error.reason });
  }

  const order = topologicalOrder(n, edges);
  if (order.length === n) {
    return { kind: 'foreign-keys', steps: order.map((t) => steps[t] as UndoStep), reordered: order.some((t, k) => t !== n - 1 - k) };
  }
  const core = cycleCore(n, edges, new Set(order));
  const tables = [...new Set([...core].sort((a, b) => a - b).map((t) => (steps[t] as UndoStep).table))];
  const fks = new Set<number>();
  for (const t of core) for (const e of edges[t] ?? []) if (e.fk !== undefined && core.has(e.to)) fks.add(e.fk);
  const constraints = [...fks].sort((a, b) => a - b).map((f) => foreignKeys[f] as UndoForeignKey);
  return fallBack(steps, { tables, constraints, reason: 'their rows depend on each other in a cycle' });
}

function fallBack(steps: readonly UndoStep[], unordered: NonNullable<UndoOrder['unordered']>): UndoOrder {
  return { kind: 'deferred', steps: [...steps].reverse(), reordered: false, unordered };
}

function columnIndexes(rel: RelationMessage, names: readonly string[], cache: Map<RelationMessage, number[] | undefined>): number[] | undefined {
  if (!cache.has(rel)) {
    const indexes = names.map((name) => rel.columns.findIndex((c) => c.name === name));
    cache.set(rel, indexes.includes(-1) ? undefined : indexes);
  }
  return cache.get(rel);
}

function addForeignKeyEdges(
  steps: readonly UndoStep[],
  byTable: ReadonlyMap<string, number[]>,
  fk: UndoForeignKey,
  f: number,
  addEdge: (from: number, to: number, fk: number) => void,
): void {
  const n = steps.length;
  const parentSteps = byTable.get(fk.parent) ?? [];
  const childSteps = byTable.get(fk.child) ?? [];
  if (parentSteps.length === 0 || childSteps.length === 0) return;
  // one cache per side: for a self-reference both sides are the same relation
  const parentCache = new Map<RelationMessage, number[] | undefined>();
  const childCache = new Map<RelationMessage, number[] | undefined>();
  const columnsOf = (t: number, side: 'parent' | 'child'): number[] => {
    const names = side === 'parent' ? fk.parentColumns : fk.childColumns;
    const columns = columnIndexes((steps[t] as UndoStep).relation, names, side === 'parent' ? parentCache : childCache);
    if (!columns) throw new Unorderable(f, `the archived rows of ${fk[side]} lack a column of ${fk.name} (${names.join(', ')})`);
    return columns;
  };

  // The lives of each key of the parent: a key is held by one row at a time, so no row identity is needed.
  const lives = new Map<string, Life[]>();
  for (const t of parentSteps) {
    const step = steps[t] as UndoStep;
    const columns = columnsOf(t, 'parent');
    const before = keyOf(step.oldRow, columns);
    const after = keyOf(step.newRow, columns);
    if (before === after) continue;
    if (before !== undefined) {
      const list = lives.get(before);
      const last = list?.at(-1);
      if (!list) lives.set(before, [{ start: -1, end: t }]);
      else if (last && last.end === n) last.end = t;
      else throw new Unorderable(f, `the transaction removes a key of ${fk.parent} it had already removed`);
    }
    if (after !== undefined) {
      const list = lives.get(after);
      if (!list) lives.set(after, [{ start: t, end: n }]);
      else if (list.at(-1)?.end === n) throw new Unorderable(f, `two rows of ${fk.parent} hold the same key`);
      else list.push({ start: t, end: n });
    }
  }

  const reference = (key: string, p: number, q: number): void => {
    const list = lives.get(key);
    if (!list) return; // a key the transaction did not touch exists throughout
    const made = p === -1 ? (list[0]?.start === -1 ? list[0] : undefined) : (list.find((l) => l.start <= p && p < l.end) ?? list.find((l) => l.start > p));
    const ended = q === n ? (list.at(-1)?.end === n ? list.at(-1) : undefined) : list.filter((l) => l.start < q).at(-1);
    if (!made || made !== ended) throw new Unorderable(f, `rows of ${fk.child} reference a key of ${fk.parent} that the transaction removed and made again`);
    if (p !== -1 && made.start !== -1) addEdge(p, made.start, f);
    if (q !== n && made.end !== n) addEdge(made.end, q, f);
  };

  // References need row identity: a change's old row is the row its previous change left, matched by
  // the whole image (identical rows are interchangeable, so which one matches does not matter).
  const open = new Map<string, { key: string | undefined; start: number }[]>();
  for (const t of childSteps) {
    const step = steps[t] as UndoStep;
    const columns = columnsOf(t, 'child');
    let start = -1;
    const before = keyOf(step.oldRow, columns);
    if (step.oldRow) start = open.get(imageOf(step.oldRow))?.pop()?.start ?? -1;
    const after = keyOf(step.newRow, columns);
    if (before !== after) {
      if (before !== undefined) reference(before, start, t);
      start = t;
    }
    if (step.newRow) {
      const image = imageOf(step.newRow);
      const rows = open.get(image);
      if (rows) rows.push({ key: after, start });
      else open.set(image, [{ key: after, start }]);
    }
  }
  for (const rows of open.values()) for (const r of rows) if (r.key !== undefined) reference(r.key, r.start, n);
}

/** Kahn's algorithm, always taking the latest change among those ready: reverse order where the edges allow. */
function topologicalOrder(n: number, edges: readonly Edge[][]): number[] {
  const waiting = new Array<number>(n).fill(0);
  for (const list of edges) for (const e of list) waiting[e.to] = (waiting[e.to] ?? 0) + 1;
  const ready = new MaxHeap();
  for (let t = 0; t < n; t++) if (waiting[t] === 0) ready.push(t);
  const order: number[] = [];
  for (let t = ready.pop(); t !== undefined; t = ready.pop()) {
    order.push(t);
    for (const e of edges[t] ?? []) {
      const left = (waiting[e.to] ?? 0) - 1;
      waiting[e.to] = left;
      if (left === 0) ready.push(e.to);
    }
  }
  return order;
}

/**
 * The steps on a cycle or between cycles: what the sort left, less those that only follow a cycle
 * (trimmed from the end, as the sort trimmed from the start), so that the warning names what matters.
 */
function cycleCore(n: number, edges: readonly Edge[][], placed: ReadonlySet<number>): Set<number> {
  const core = new Set<number>();
  for (let t = 0; t < n; t++) if (!placed.has(t)) core.add(t);
  const incoming: number[][] = Array.from({ length: n }, () => []);
  const outgoing = new Array<number>(n).fill(0);
  for (const t of core)
    for (const e of edges[t] ?? [])
      if (core.has(e.to)) {
        incoming[e.to]?.push(t);
        outgoing[t] = (outgoing[t] ?? 0) + 1;
      }
  const sinks = [...core].filter((t) => outgoing[t] === 0);
  for (let t = sinks.pop(); t !== undefined; t = sinks.pop()) {
    core.delete(t);
    for (const from of incoming[t] ?? []) {
      const left = (outgoing[from] ?? 0) - 1;
      outgoing[from] = left;
      if (left === 0) sinks.push(from);
    }
  }
  return core;
}

/** A binary max-heap of step numbers. */
class MaxHeap {
  private readonly items: number[] = [];

  push(value: number): void {
    const items = this.items;
    items.push(value);
    for (let i = items.length - 1; i > 0;) {
      const up = (i - 1) >> 1;
      if ((items[up] as number) >= value) break;
      items[i] = items[up] as number;
      items[up] = value;
      i = up;
    }
  }

  pop(): number | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    items[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let largest = i;
      if (l < items.length && (items[l] as number) > (items[largest] as number)) largest = l;
      if (r < items.length && (items[r] as number) > (items[largest] as number)) largest = r;
      if (largest === i) break;
      items[i] = items[largest] as number;
      items[largest] = last;
      i = largest;
    }
    return top;
  }
}
