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
  /** Rows added (superseded ones included). */
  rows = 0;
  /**
   * Update rows superseded by a later update in place of the same key in this batch (see BatchRouter):
   * `superseded[r]` is 1 for such a row r, which the statement leaves out, so each key's last row wins.
   */
  private superseded: Uint8Array | undefined;
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
    /** The part of a split table whose keys it holds (-1: the table is not split). */
    readonly part = -1,
  ) {
    this.copy = kind === 'insert' ? new ByteWriter() : undefined;
    this.arrays = kind === 'insert' ? [] : [...relation.keyIndexes, ...setIndexes].map(() => new TextArrayBuilder());
  }

  /** Bytes held (COPY text, or array elements): kept as rows are added, since the router asks after every one. */
  bytes = 0;

  addInsert(row: RawTuple): void {
    const copy = this.copy as ByteWriter;
    const before = copy.length;
    writeCopyRow(copy, row);
    this.bytes += copy.length - before;
    this.rows++;
  }

  /** Key values from `keys` (the old row, or the new one when the key did not change), assigned values from `row`. */
  addUpdate(keys: RawTuple, row: RawTuple): void {
    const keyIndexes = this.relation.keyIndexes;
    let a = 0;
    for (const i of keyIndexes) this.bytes += (this.arrays[a++] as TextArrayBuilder).add(keys, i);
    for (const i of this.setIndexes) this.bytes += (this.arrays[a++] as TextArrayBuilder).add(row, i);
    this.rows++;
  }

  /** Leaves update row `r` out of the statement: a later row of this batch updates the same key to what the source had after both. */
  supersede(r: number): void {
    let superseded = this.superseded;
    if (!superseded || r >= superseded.length) {
      const grown = new Uint8Array(Math.max(1024, 2 * this.rows));
      if (superseded) grown.set(superseded);
      superseded = this.superseded = grown;
    }
    superseded[r] = 1;
  }

  /** Array parameter `a` of an update or delete statement (superseded rows left out). */
  arrayParameter(a: number): Buffer {
    return (this.arrays[a] as TextArrayBuilder).toBuffer(this.superseded);
  }

  addDelete(keys: RawTuple): void {
    const keyIndexes = this.relation.keyIndexes;
    for (let a = 0; a < keyIndexes.length; a++) this.bytes += (this.arrays[a] as TextArrayBuilder).add(keys, keyIndexes[a] as number);
    this.rows++;
  }
}

/**
 * The key of a row for conflict tracking (several columns: their texts NUL-separated, which a text
 * value cannot hold). Two rows have the same key exactly when their key columns have the same texts.
 */
export function rowKey(tuple: RawTuple, keyIndexes: readonly number[], fallback?: RawTuple): string | number {
  if (keyIndexes.length === 1) {
    const i = keyIndexes[0] as number;
    return fallback && tuple.kinds[i] === ValueKind.Unchanged ? fallback.keyOf(i) : tuple.keyOf(i);
  }
  let text = '';
  for (const i of keyIndexes) text += `${fallback && tuple.kinds[i] === ValueKind.Unchanged ? fallback.keyOf(i) : tuple.keyOf(i)}\u0000`;
  return text;
}
