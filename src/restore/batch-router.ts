import { Tag } from '../archive/segment-format';
import { PitrError } from '../errors';
import { ValueKind, type RawChange, type RawTuple } from './raw-change';
import type { ReplayRelation } from './replay-relation';
import { TableBatch, rowKey, type BatchKind } from './table-batch';

const MAX_ROWS = 10_000;
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Open batches of one table; beyond this they are handed on. */
const MAX_OPEN = 8;
/** All tables' open batches together; beyond this they are all handed on. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const NO_COLUMNS: readonly number[] = [];

/**
 * Groups each table's keyed changes into batches (one statement each) and hands them on in an order
 * that gives every row the source's result. Tables are independent, so the batches of different
 * tables may go in any order.
 *
 * Within a table, when the target has no unique index but the key's (and no exclusion constraint),
 * two changes to different keys commute: a change joins the newest open batch of its kind and shape
 * that comes after every open batch touching its key (old or new), else opens a new batch at the end.
 * So the inserts, updates and deletes of many transactions gather into a few large statements while
 * every key sees its changes in the source's order. Otherwise a change joins only the last batch
 * (same kind and shape) and a row touched twice starts a new batch. Memory is bounded by the limits,
 * whatever the size of a transaction.
 */
/** More than any number of parts a table is split into (SegmentReplay: at most one per lane). */
export const MAX_PARTS = 64;
/** Above any batch's row count: a key's touch holds its batch's seq and a row of it. */
const ROW_SPAN = 16_384;

/** A table's open batches in the order they must run, and for each key the newest batch touching it. */
interface OpenTable {
  batches: TableBatch[];
  /**
   * For each key: the seq of the newest batch touching it times ROW_SPAN, plus, when that change was an
   * update in place (key unchanged), 1 + its row in that batch. One map lookup per key and change.
   */
  touch: Map<string | number, number>;
  nextSeq: number;
  /** The part of a split table these batches belong to (-1: the whole table). */
  part: number;
}

export class BatchRouter {
  private readonly open = new Map<number, OpenTable>();
  /** Relation id → the highest part of it with open batches (-1: the whole table). */
  private readonly highestPart = new Map<number, number>();
  private readonly setIndexes: number[] = [];
  private readonly keys: (string | number)[] = [];
  private addsSinceCheck = 0;

  constructor(
    private readonly handOn: (batch: TableBatch) => void,
    /** Whether changes to different keys of this table may be reordered. */
    private readonly reorderable: (relation: ReplayRelation) => boolean,
  ) {}

  /** Adds one change; `part` names the part of a split table its key belongs to (-1: not split). */
  add(change: RawChange, relation: ReplayRelation, part = -1): void {
    const columns = relation.message.columns.length;
    const tuple = change.tag === Tag.Insert || change.tag === Tag.Update ? change.next : change.old;
    if (tuple.count !== columns)
      throw new PitrError(
        'Integrity',
        `a change to ${relation.name} carries ${tuple.count} columns where its relation message has ${columns}`,
        'the archived change data is corrupt',
      );
    const keys = this.keys;
    keys.length = 0;
    let kind: BatchKind;
    let setIndexes = NO_COLUMNS;
    let keyTuple: RawTuple;
    if (change.tag === Tag.Insert) {
      kind = 'insert';
      keyTuple = change.next;
      keys.push(rowKey(keyTuple, relation.keyIndexes));
    } else if (change.tag === Tag.Update) {
      kind = 'update';
      keyTuple = change.hasOld ? change.old : change.next;
      setIndexes = this.assigned(change, relation);
      const oldKey = rowKey(keyTuple, relation.keyIndexes);
      keys.push(oldKey);
      if (change.hasOld) {
        const newKey = rowKey(change.next, relation.keyIndexes, keyTuple);
        if (newKey !== oldKey) keys.push(newKey);
      }
    } else {
      kind = 'delete';
      keyTuple = change.old;
      keys.push(rowKey(keyTuple, relation.keyIndexes));
    }
    const table = this.tableOf(relation, part);
    const inPlace = kind === 'update' && keys.length === 1;
    const batch =
      (inPlace && this.sameRowAgain(table, relation, setIndexes, keys[0] as string | number, keyTuple)) || this.place(table, relation, kind, setIndexes, keys);
    if (kind === 'insert') batch.addInsert(change.next);
    else if (kind === 'update') batch.addUpdate(keyTuple, change.next);
    else batch.addDelete(keyTuple);
    const touch = batch.seq * ROW_SPAN + (inPlace ? batch.rows : 0);
    for (const key of keys) table.touch.set(key, touch);
    if (batch.rows >= MAX_ROWS || batch.bytes >= MAX_BATCH_BYTES) this.flush(relation.message.relationId);
    if (++this.addsSinceCheck >= 1000) {
      this.addsSinceCheck = 0;
      let pending = 0;
      for (const open of this.open.values()) for (const b of open.batches) pending += b.bytes;
      if (pending >= MAX_PENDING_BYTES) this.flushAll();
    }
  }

  /**
   * An update assigns what changed: not unchanged TOAST values, not key columns that kept their value
   * (with no old key sent, the key did not change). GENERATED ALWAYS columns are left out later, where
   * the target's catalog is known.
   */
  private assigned(change: RawChange, relation: ReplayRelation): number[] {
    const { next } = change;
    const keys = change.hasOld ? change.old : next;
    const setIndexes = this.setIndexes;
    setIndexes.length = 0;
    const columns = relation.message.columns;
    for (let i = 0; i < next.count; i++) {
      if (next.kinds[i] === ValueKind.Unchanged) continue;
      if (((columns[i]?.flags ?? 0) & 1) === 1 && (!change.hasOld || keys.sameValue(i, next, i))) continue;
      setIndexes.push(i);
    }
    return setIndexes;
  }

  /** The open batches of a table, or of one part of it (each part gathers its own, as a table of its own). */
  private tableOf(relation: ReplayRelation, part: number): OpenTable {
    const id = openId(relation.message.relationId, part);
    let table = this.open.get(id);
    if (table && table.batches[0]?.relation !== relation) {
      this.flush(relation.message.relationId);
      table = undefined;
    }
    if (!table) {
      table = { batches: [], touch: new Map(), nextSeq: 0, part };
      this.open.set(id, table);
      const relationId = relation.message.relationId;
      if (part > (this.highestPart.get(relationId) ?? -1)) this.highestPart.set(relationId, part);
    }
    return table;
  }

  /**
   * Hot rows (pgbench's accounts, branches and tellers, counters, queues): an update in place of a key
   * whose last change was an update in place in an open batch of the same shape joins that batch, and
   * the earlier row is left out of its statement: the new row assigns the same columns, with the values
   * the source had after both. Where keys commute only (equal keys are then equal texts, and a key is
   * never NULL): the batch may be behind batches of other keys, never behind one touching this key (its
   * last touch is this batch).
   */
  private sameRowAgain(
    table: OpenTable,
    relation: ReplayRelation,
    setIndexes: readonly number[],
    key: string | number,
    keyTuple: RawTuple,
  ): TableBatch | undefined {
    if (!this.reorderable(relation)) return undefined;
    const touch = table.touch.get(key);
    if (touch === undefined) return undefined;
    const row = (touch % ROW_SPAN) - 1;
    if (row < 0) return undefined;
    const seq = (touch - row - 1) / ROW_SPAN;
    const batch = table.batches.find((b) => b.seq === seq);
    if (!batch || !fits(batch, 'update', setIndexes) || batch.rows >= MAX_ROWS || batch.bytes >= MAX_BATCH_BYTES) return undefined;
    if (relation.keyIndexes.some((i) => keyTuple.kinds[i] !== ValueKind.Text)) return undefined;
    batch.supersede(row);
    return batch;
  }

  /** The open batch this change joins, or a new one at the end of the table's list. */
  private place(table: OpenTable, relation: ReplayRelation, kind: BatchKind, setIndexes: readonly number[], keys: readonly (string | number)[]): TableBatch {
    const batches = table.batches;
    let after = -1;
    for (const key of keys) {
      const touch = table.touch.get(key);
      const seq = touch === undefined ? -1 : Math.floor(touch / ROW_SPAN);
      if (seq > after) after = seq;
    }
    if (this.reorderable(relation)) {
      for (let i = batches.length - 1; i >= 0; i--) {
        const batch = batches[i] as TableBatch;
        if (batch.seq <= after) break;
        if (fits(batch, kind, setIndexes)) return batch;
      }
      if (batches.length >= MAX_OPEN) this.handOnTable(table);
    } else {
      const last = batches[batches.length - 1];
      // updates: a row touched twice in one statement would be changed only once
      if (last && fits(last, kind, setIndexes) && !(kind === 'update' && after === last.seq)) return last;
      this.handOnTable(table);
    }
    const batch = new TableBatch(table.nextSeq++, kind, relation, setIndexes.slice(), table.part);
    table.batches.push(batch);
    return batch;
  }

  /** Hands on a table's open batches, in order, keeping the table open. */
  private handOnTable(table: OpenTable): void {
    const batches = table.batches;
    table.batches = [];
    table.touch.clear();
    for (const batch of batches) if (batch.rows > 0) this.handOn(batch);
  }

  /** Whether an open batch of this part of a table (-1: the whole table) touches `key`. */
  touches(relationId: number, part: number, key: string | number): boolean {
    return this.open.get(openId(relationId, part))?.touch.has(key) === true;
  }

  /** Hands on the open batches of one part of a table, in order. */
  flushPart(relationId: number, part: number): void {
    const id = openId(relationId, part);
    const table = this.open.get(id);
    if (!table) return;
    this.open.delete(id);
    for (const batch of table.batches) if (batch.rows > 0) this.handOn(batch);
  }

  /** Hands on the open batches of one table (all its parts), in order (before a change of it that is not batched, or a new Relation message). */
  flush(relationId: number): void {
    const highest = this.highestPart.get(relationId) ?? -1;
    for (let part = -1; part <= highest; part++) {
      const id = openId(relationId, part);
      const table = this.open.get(id);
      if (!table) continue;
      this.open.delete(id);
      for (const batch of table.batches) if (batch.rows > 0) this.handOn(batch);
    }
  }

  /** Hands on every open batch (before a TRUNCATE or DDL, and at the end of a segment). */
  flushAll(): void {
    const tables = [...this.open.values()];
    this.open.clear();
    for (const table of tables) for (const batch of table.batches) if (batch.rows > 0) this.handOn(batch);
  }
}

const openId = (relationId: number, part: number): number => relationId * (MAX_PARTS + 1) + part + 1;

function fits(batch: TableBatch, kind: BatchKind, setIndexes: readonly number[]): boolean {
  return batch.kind === kind && (kind !== 'update' || sameIndexes(batch.setIndexes, setIndexes));
}

function sameIndexes(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
