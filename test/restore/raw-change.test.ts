/**
 * Replay locates values in archived messages without decoding them (RawChange); reading archives back
 * decodes them (the pgoutput decoder). The two must agree on every Insert, Update and Delete message,
 * here the whole type zoo as a real PostgreSQL 15 sends it: a key table and a REPLICA IDENTITY FULL
 * one, inserts, updates with an unchanged TOASTed value and with a key change, deletes.
 */
import { type Client } from 'pg';
import { decodePgoutput, type TupleData } from '../../src/archive/pgoutput-decoder';
import { RawChange, ValueKind, type RawTuple } from '../../src/restore/raw-change';
import { PgCluster } from '../harness/pg-cluster';
import { TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL } from '../fixtures/type-zoo';

let cluster: PgCluster;
let messages: Buffer[] = [];

beforeAll(async () => {
  cluster = await PgCluster.start();
  await cluster.psql(TYPE_ZOO_SETUP_SQL);
  await cluster.psql(`CREATE TABLE public.type_zoo_full (LIKE public.type_zoo); ALTER TABLE public.type_zoo_full REPLICA IDENTITY FULL;
    CREATE PUBLICATION pub FOR ALL TABLES`);
  await cluster.query(`SELECT 'slot' FROM pg_create_logical_replication_slot('s', 'pgoutput')`);
  await cluster.psql(TYPE_ZOO_INSERT_SQL);
  await cluster.psql(`INSERT INTO public.type_zoo_full SELECT * FROM public.type_zoo;
    UPDATE public.type_zoo SET c_integer = c_integer + 1 WHERE id = 1;        -- c_big_text unchanged (TOAST): 'u'
    UPDATE public.type_zoo SET id = id + 100 WHERE id = 2;                    -- key change: old key sent
    UPDATE public.type_zoo_full SET c_text = 'changed' WHERE id IN (1, 3);   -- the whole old row
    DELETE FROM public.type_zoo WHERE id = 3;
    DELETE FROM public.type_zoo_full WHERE id = 4`);
  await cluster.withClient(async (client: Client) => {
    await client.query('CHECKPOINT'); // decoding stops at the flushed WAL position (the test cluster commits asynchronously)
    const { rows } = await client.query<{ data: Buffer }>(
      `SELECT data FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')`,
    );
    messages = rows.map((r) => r.data).filter((m) => m[0] === 0x49 || m[0] === 0x55 || m[0] === 0x44);
  });
}, 120_000);

afterAll(async () => cluster?.destroy());

/** What the decoder says of a value, and what RawChange located: kind and exact bytes. */
function agree(raw: RawTuple, decoded: TupleData, where: string): void {
  expect([where, raw.count]).toEqual([where, decoded.length]);
  decoded.forEach((value, i) => {
    const bytes = raw.buf.subarray(raw.starts[i], raw.ends[i]);
    const kind = raw.kinds[i];
    switch (value.kind) {
      case 'null':
        expect([where, i, kind]).toEqual([where, i, ValueKind.Null]);
        break;
      case 'unchanged':
        expect([where, i, kind]).toEqual([where, i, ValueKind.Unchanged]);
        break;
      case 'text':
        expect([where, i, kind, bytes.toString('utf8')]).toEqual([where, i, ValueKind.Text, value.value]);
        break;
      case 'binary':
        expect([where, i, kind, bytes.equals(value.value)]).toEqual([where, i, ValueKind.Binary, true]);
        break;
      default: {
        const never: never = value;
        throw new Error(`unknown value ${String(never)}`);
      }
    }
  });
}

test('every change message of the type zoo is located exactly where the decoder reads it', () => {
  const kinds = { I: 0, U: 0, D: 0, unchanged: 0, oldKey: 0, oldRow: 0 };
  const raw = new RawChange();
  for (const [n, message] of messages.entries()) {
    const decoded = decodePgoutput(message);
    raw.read(message);
    const where = `message ${n} (${String.fromCharCode(message[0] as number)})`;
    if (decoded.tag !== 'I' && decoded.tag !== 'U' && decoded.tag !== 'D') throw new Error(`${where} is not a change`);
    expect([where, raw.relationId]).toEqual([where, decoded.relationId]);
    kinds[decoded.tag]++;
    if (decoded.tag !== 'D') {
      agree(raw.next, decoded.newTuple, `${where} new tuple`);
      if (decoded.newTuple.some((v) => v.kind === 'unchanged')) kinds.unchanged++;
    }
    const old = decoded.tag === 'I' ? undefined : decoded.oldTuple;
    expect([where, raw.oldKind]).toEqual([where, old ? old.kind.charCodeAt(0) : 0]);
    if (old) {
      agree(raw.old, old.values, `${where} old tuple`);
      if (old.kind === 'K') kinds.oldKey++;
      else kinds.oldRow++;
    }
  }
  // the zoo exercised what it is for: every message kind, unchanged TOAST, key-only and whole old rows
  expect(kinds.I).toBeGreaterThanOrEqual(16);
  expect(kinds.U).toBe(4);
  expect(kinds.D).toBe(2);
  expect(kinds.unchanged).toBeGreaterThan(0);
  expect(kinds.oldKey).toBeGreaterThan(0);
  expect(kinds.oldRow).toBeGreaterThan(0);
});
