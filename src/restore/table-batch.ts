import { ByteWriter } from './byte-writer';
import { writeCopyRow } from './copy-row';
import { ValueKind, type RawTuple } from './raw-change';
import type { ReplayRelation } from './replay-relation';
import { TextArrayBuilder } from './text-array';

export type BatchKind = 'insert' | 'update' | 'delete';

/**
 * A run of same-shaped changes to one table, applied as one statement: inserts as COPY rows, updates
 * and deletes as one text[] per bound column (key columns first, then assigned columns).
 */
export class TableBatch {
  rows = 0;
  /**
   * An update batch holding some key more than once, each time an update in place of the same row: its
   * statement applies only the last row of each key (see BatchRouter).
   */
  duplicateKeys = false;
  /** COPY text rows (inserts). */
  readonly copy: ByteWriter | undefined;
  /** One array per key column, then one per assigned column (updates and deletes). */
  readonly arrays: TextArrayBuilder[];
  constructor(
    /** Order of creation among the batches of a table. */
    readonly seq: number,
    readonly kind: BatchKind,
    readonly relation: ReplayRelation,
    /** Columns assigned by an update, in column order. */
    readonly setIndexes: readonly number[],
  ) {
    this.copy = kind === 'insert' ? new ByteWriter() : undefined;
    this.arrays = kind === 'insert' ? [] : [...relation.keyIndexes, ...setIndexes].map(() => new TextArrayBuilder());
  }

  get bytes(): number {
    if (this.copy) return this.copy.length;
    let n = 0;
    for (const array of this.arrays) n += array.bytes;
    return n;
  }

  addInsert(row: RawTuple): void {
    writeCopyRow(this.copy as ByteWriter, row);
    this.rows++;
  }

  /** Key values from `keys` (the old row, or the new one when the key did not change), assigned values from `row`. */
  addUpdate(keys: RawTuple, row: RawTuple): void {
    const keyIndexes = this.relation.keyIndexes;
    let a = 0;
    for (const i of keyIndexes) (this.arrays[a++] as TextArrayBuilder).add(keys, i);
    for (const i of this.setIndexes) (this.arrays[a++] as TextArrayBuilder).add(row, i);
    this.rows++;
  }

  addDelete(keys: RawTuple): void {
    const keyIndexes = this.relation.keyIndexes;
    for (let a = 0; a < keyIndexes.length; a++) (this.arrays[a] as TextArrayBuilder).add(keys, keyIndexes[a] as number);
    this.rows++;
  }
}

/** The key of a row for conflict tracking (several columns: their texts NUL-separated). */
export function rowKey(tuple: RawTuple, keyIndexes: readonly number[], fallback?: RawTuple): string | number {
  if (keyIndexes.length === 1) {
    const i = keyIndexes[0] as number;
    return fallback && tuple.kinds[i] === ValueKind.Unchanged ? fallback.keyOf(i) : tuple.keyOf(i);
  }
  let text = '';
  for (const i of keyIndexes) text += `${fallback && tuple.kinds[i] === ValueKind.Unchanged ? fallback.keyOf(i) : tuple.keyOf(i)}\u0000`;
  return text;
}
