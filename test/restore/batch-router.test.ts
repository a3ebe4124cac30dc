/**
 * The batch router may reorder a table's changes across kinds and transactions where keys commute.
 * Model check: random valid change streams (inserts, updates, key changes, deletes, re-inserts of
 * deleted keys) are routed, the batches are applied to an in-memory table with the semantics of the
 * statements they become (one statement sees the table as it was before it; a duplicate key is an
 * error), and the result must equal applying the changes one by one, in order.
 */
import type { RelationMessage } from '../../src/archive/pgoutput-decoder';
import { BatchRouter } from '../../src/restore/batch-router';
import { RawChange } from '../../src/restore/raw-change';
import type { TargetTable } from '../../src/restore/target-catalog';
import { replayRelation, type ReplayRelation } from '../../src/restore/replay-relation';
import type { TableBatch } from '../../src/restore/table-batch';
import { rng } from './fidelity-workload';

type Row = Map<string, string | null>; // column -> text
type Change = { op: 'I'; row: [string, string | null] } | { op: 'U'; key: string; row: [string, string | null] } | { op: 'D'; key: string };

const RELATION: RelationMessage = {
  tag: 'R',
  relationId: 16384,
  namespace: 'public',
  name: 't',
  replicaIdentity: 'd',
  columns: [
    { flags: 1, name: 'id', typeOid: 20, typeModifier: -1 },
    { flags: 0, name: 'v', typeOid: 25, typeModifier: -1 },
  ],
};

function tuple(values: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, values.length])];
  for (const v of values) {
    if (v === null) parts.push(Buffer.from('n'));
    else {
      const bytes = Buffer.from(v, 'utf8');
      const head = Buffer.alloc(5);
      head.write('t', 0);
      head.writeInt32BE(bytes.length, 1);
      parts.push(head, bytes);
    }
  }
  return Buffer.concat(parts);
}

function message(change: Change): Buffer {
  const head = Buffer.alloc(5);
  head.write(change.op, 0);
  head.writeUInt32BE(RELATION.relationId, 1);
  if (change.op === 'I') return Buffer.concat([head, Buffer.from('N'), tuple(change.row)]);
  if (change.op === 'D') return Buffer.concat([head, Buffer.from('K'), tuple([change.key, null])]);
  const keyChanged = change.row[0] !== change.key;
  return Buffer.concat([head, ...(keyChanged ? [Buffer.from('K'), tuple([change.key, null])] : []), Buffer.from('N'), tuple(change.row)]);
}

/** Elements of a binary text[] parameter. */
function arrayElements(buf: Buffer): (string | null)[] {
  if (buf.readInt32BE(0) === 0) return [];
  const n = buf.readInt32BE(12);
  const out: (string | null)[] = [];
  let at = 20;
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(at);
    at += 4;
    if (len < 0) out.push(null);
    else {
      out.push(buf.toString('utf8', at, at + len));
      at += len;
    }
  }
  return out;
}

/** A COPY text field back to its value. */
function copyText(field: string): string | null {
  if (field === '\\N') return null;
  return field.replace(/\\(.)/g, (_, c: string) => ({ t: '\t', n: '\n', r: '\r', '\\': '\\' })[c] ?? c);
}

/** Applies one batch as its statement would: against the table as it was before the statement. */
function applyBatch(table: Map<string, Row>, batch: TableBatch): void {
  if (batch.kind === 'insert') {
    const text = Buffer.concat((batch.copy as NonNullable<TableBatch['copy']>).toChunks()).toString('utf8');
    for (const line of text.split('\n').filter(Boolean)) {
      const [id, v] = line.split('\t').map(copyText) as [string, string | null];
      if (table.has(id)) throw new Error(`duplicate key ${id} on insert`);
      table.set(
        id,
        new Map<string, string | null>([
          ['id', id],
          ['v', v],
        ]),
      );
    }
    return;
  }
  const columns = batch.arrays.map((_, a) => arrayElements(batch.arrayParameter(a)));
  const keys = columns[0] as (string | null)[];
  const before = new Map(table);
  if (batch.kind === 'delete') {
    for (const key of keys) if (before.has(key as string)) table.delete(key as string);
    return;
  }
  const names = batch.setIndexes.map((i) => RELATION.columns[i]?.name as string);
  const touched = new Set<string>();
  keys.forEach((key, r) => {
    const row = before.get(key as string);
    if (!row) return;
    if (touched.has(key as string)) throw new Error(`row ${key} updated twice by one statement`);
    touched.add(key as string);
    const updated = new Map(row);
    names.forEach((name, j) => updated.set(name, (columns[1 + j] as (string | null)[])[r] as string | null));
    const newKey = updated.get('id') as string;
    table.delete(key as string);
    if (table.has(newKey)) throw new Error(`duplicate key ${newKey} on update`);
    table.set(newKey, updated);
  });
}

function sequential(changes: Change[]): Map<string, Row> {
  const table = new Map<string, Row>();
  for (const c of changes) {
    if (c.op === 'I')
      table.set(
        c.row[0],
        new Map<string, string | null>([
          ['id', c.row[0]],
          ['v', c.row[1]],
        ]),
      );
    else if (c.op === 'D') table.delete(c.key);
    else {
      table.delete(c.key);
      table.set(
        c.row[0],
        new Map<string, string | null>([
          ['id', c.row[0]],
          ['v', c.row[1]],
        ]),
      );
    }
  }
  return table;
}

/** A valid stream: inserts of absent keys, updates (some changing the key) and deletes of present ones. */
function randomChanges(random: () => number, count: number, keySpace: number): Change[] {
  const present = new Set<string>();
  const changes: Change[] = [];
  const pick = (): string => [...present][Math.floor(random() * present.size)] as string;
  const absent = (): string | undefined => {
    for (let tries = 0; tries < 20; tries++) {
      const number = String(Math.floor(random() * keySpace) - (random() < 0.1 ? keySpace : 0));
      // now and then the same number in another text ("07", "-0"): a different key of a text column
      const form = random();
      const key = form < 0.05 ? `0${number}` : form < 0.07 ? `-0${number.replace('-', '')}` : number;
      if (!present.has(key)) return key;
    }
    return undefined;
  };
  while (changes.length < count) {
    const r = random();
    const value = random() < 0.1 ? null : `v${Math.floor(random() * 1000)}\t\\x`;
    if (r < 0.4 || present.size === 0) {
      const key = absent();
      if (key === undefined) continue;
      present.add(key);
      changes.push({ op: 'I', row: [key, value] });
    } else if (r < 0.75) {
      const key = pick();
      const newKey = random() < 0.15 ? absent() : key;
      if (newKey === undefined) continue;
      present.delete(key);
      present.add(newKey);
      changes.push({ op: 'U', key, row: [newKey, value] });
    } else {
      const key = pick();
      present.delete(key);
      changes.push({ op: 'D', key });
    }
  }
  return changes;
}

function replayThroughRouter(changes: Change[], relation: ReplayRelation, reorder: boolean, flushEvery: number): { table: Map<string, Row>; batches: number } {
  const table = new Map<string, Row>();
  let batches = 0;
  const router = new BatchRouter(
    (batch) => {
      batches++;
      applyBatch(table, batch);
    },
    () => reorder,
  );
  const raw = new RawChange();
  changes.forEach((change, i) => {
    router.add(raw.read(message(change)), relation);
    if (i % flushEvery === flushEvery - 1) router.flushAll();
  });
  router.flushAll();
  return { table, batches };
}

/** The target table of the tests' relation: its key's unique index alone (reorderable) or with another one. */
const target = (keysCommute: boolean): TargetTable => ({ oid: 1, schema: 'public', name: 't', sql: '"public"."t"', keysCommute, primaryKey: ['id'] });

const rows = (table: Map<string, Row>): string[] => [...table.values()].map((r) => `${String(r.get('id'))}=${String(r.get('v'))}`).sort();

describe('batch router', () => {
  for (const reorder of [true, false]) {
    test(`${reorder ? 'reordering where keys commute' : 'in source order'}: 200 random streams give the sequential result`, () => {
      const relation = replayRelation(RELATION, target(reorder), true);
      expect(relation.reorderable).toBe(reorder);
      let totalBatches = 0;
      let totalChanges = 0;
      for (let seed = 1; seed <= 200; seed++) {
        const random = rng(seed);
        const changes = randomChanges(random, 50 + Math.floor(random() * 3000), 5 + Math.floor(random() * 2000));
        const { table, batches } = replayThroughRouter(changes, relation, reorder, 1 + Math.floor(random() * 5000));
        expect(rows(table)).toEqual(rows(sequential(changes)));
        totalBatches += batches;
        totalChanges += changes.length;
      }
      if (reorder) expect(totalChanges / totalBatches).toBeGreaterThan(5);
    });
  }

  test('inserts, updates and deletes of many transactions gather into few statements when keys commute', () => {
    // the shape of a common workload: each transaction inserts new rows, updates the previous
    // transaction's rows and deletes some of its own
    const changes: Change[] = [];
    for (let t = 0; t < 200; t++) {
      for (let i = 0; i < 10; i++) changes.push({ op: 'I', row: [String(t * 10 + i), 'new'] });
      if (t > 0) for (let i = 0; i < 5; i++) changes.push({ op: 'U', key: String((t - 1) * 10 + i), row: [String((t - 1) * 10 + i), `u${t}`] });
      for (let i = 5; i < 10; i++) changes.push({ op: 'D', key: String(t * 10 + i) });
    }
    const relation = replayRelation(RELATION, target(true), true);
    const { table, batches } = replayThroughRouter(changes, relation, true, 1_000_000);
    expect(rows(table)).toEqual(rows(sequential(changes)));
    expect(batches).toBeLessThanOrEqual(3);
    const strict = replayThroughRouter(changes, replayRelation(RELATION, target(false), true), false, 1_000_000);
    expect(strict.batches).toBeGreaterThan(500);
  });

  test('updates of a few hot rows by many transactions (pgbench tellers and branches) gather into few statements, the last row of each key winning', () => {
    const random = rng(7);
    // "7", "07" and "007", "0" and "-0": keys of a text column whose texts differ only in form
    const hot = [...Array.from({ length: 10 }, (_, k) => String(k)), '07', '007', '-0'];
    const changes: Change[] = hot.map((key) => ({ op: 'I' as const, row: [key, '0'] as [string, string] }));
    for (let t = 0; t < 3000; t++) {
      const key = hot[Math.floor(random() * hot.length)] as string;
      changes.push({ op: 'U', key, row: [key, `balance ${t}`] });
      // now and then the stream does what breaks a merge: a key change, a delete and an insert again
      if (t % 500 === 250) changes.push({ op: 'U', key: '3', row: ['13', 'moved'] }, { op: 'U', key: '13', row: ['3', 'back'] });
      if (t % 700 === 350) changes.push({ op: 'D', key: '5' }, { op: 'I', row: ['5', 'again'] });
    }
    const relation = replayRelation(RELATION, target(true), true);
    const { table, batches } = replayThroughRouter(changes, relation, true, 1_000_000);
    expect(rows(table)).toEqual(rows(sequential(changes)));
    expect(batches).toBeLessThan(40);
  });
});
