/**
 * COPY rows and binary text[] parameters built from archived tuples, read back by a real PostgreSQL:
 * what arrives is byte for byte what the tuple held, NULL kept apart from the text "\N", whatever
 * characters the value has.
 */
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteWriter } from '../../src/restore/byte-writer';
import { writeCopyRow } from '../../src/restore/copy-row';
import { RawTuple, ValueKind } from '../../src/restore/raw-change';
import { TextArrayBuilder } from '../../src/restore/text-array';
import { PgCluster } from '../harness/pg-cluster';

/** A TupleData as pgoutput frames it: column count, then per column a kind byte and, for text, a length and the bytes. */
function tupleData(values: (string | null | 'unchanged')[]): RawTuple {
  const parts: Buffer[] = [Buffer.from([values.length >> 8, values.length & 0xff])];
  for (const value of values) {
    if (value === null) parts.push(Buffer.from([ValueKind.Null]));
    else if (value === 'unchanged') parts.push(Buffer.from([ValueKind.Unchanged]));
    else {
      const bytes = Buffer.from(value, 'utf8');
      const head = Buffer.alloc(5);
      head[0] = ValueKind.Text;
      head.writeInt32BE(bytes.length, 1);
      parts.push(head, bytes);
    }
  }
  const buf = Buffer.concat(parts);
  const tuple = new RawTuple();
  tuple.read(buf, 0, buf.length);
  return tuple;
}

const AWKWARD = ['plain', 'tab\there', 'new\nline', 'carriage\rreturn', 'back\\slash', '\\N', '', 'ünïcödé ✓', '\\.', 'end\\'];

let cluster: PgCluster;
beforeAll(async () => {
  cluster = await PgCluster.start();
  await cluster.query('CREATE TABLE t (i int, v text)');
});
afterAll(async () => cluster?.destroy());

test('COPY text rows carry every value exactly, NULL apart from the text \\N', async () => {
  const out = new ByteWriter();
  AWKWARD.forEach((value, i) => writeCopyRow(out, tupleData([String(i), value])));
  writeCopyRow(out, tupleData([String(AWKWARD.length), null]));
  await cluster.withClient(async (client) => {
    await pipeline(Readable.from(out.toChunks()), client.query(copyFrom('COPY t (i, v) FROM STDIN')));
    const { rows } = await client.query<{ i: number; v: string | null }>('SELECT i, v FROM t ORDER BY i');
    expect(rows.map((r) => r.v)).toEqual([...AWKWARD, null]);
  });
});

test('an unchanged TOAST value in an inserted row is corrupt data, not a value', () => {
  expect(() => writeCopyRow(new ByteWriter(), tupleData(['1', 'unchanged']))).toThrow(/column 1 of an inserted row has no value/);
});

test('binary text[] parameters hold each value as its element, NULLs as NULL', async () => {
  const array = new TextArrayBuilder();
  for (const value of [...AWKWARD, null]) array.add(tupleData([value]), 0);
  await cluster.withClient(async (client) => {
    const { rows } = await client.query<{ v: string | null; n: number }>('SELECT v, n::int FROM unnest($1::text[]) WITH ORDINALITY AS x(v, n) ORDER BY n', [
      array.toBuffer(),
    ]);
    expect(rows.map((r) => r.v)).toEqual([...AWKWARD, null]);
    const empty = await client.query<{ n: number }>('SELECT cardinality($1::text[]) AS n', [new TextArrayBuilder().toBuffer()]);
    expect(empty.rows[0]?.n).toBe(0);
  });
});
