import { execFileSync } from 'node:child_process';
import { Client } from 'pg';
import { TYPE_ZOO_COLUMNS, TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL } from '../fixtures/type-zoo';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { DECODING_SESSION_OPTIONS } from '../../src/pg/session-settings';
import type { InsertMessage, UpdateMessage, LogicalMessage } from '../../src/archive/pgoutput-decoder';
import { objectFile } from '../harness/repo-files';

let fx: ArchiveFixture;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(TYPE_ZOO_SETUP_SQL);
  const init = await fx.init();
  expect(init.stderr).not.toMatch(/error/);
  expect(init.code).toBe(0);
});

afterAll(async () => {
  await fx.destroy();
});

test('init is idempotent and says what exists', async () => {
  const again = await fx.init(['--json']);
  expect(again.code).toBe(0);
  const summary = JSON.parse(again.stdout) as { created: string[]; existing: string[] };
  expect(summary.created).toEqual([]);
  expect(summary.existing).toEqual(expect.arrayContaining(['publication pitr', 'replication slot pitr', 'event trigger pitr_capture_ddl']));
});

test('every type-zoo value, interleaved transactions, DDL and unchanged TOAST are archived exactly', async () => {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');

  await fx.cluster.psql(TYPE_ZOO_INSERT_SQL);
  // two transactions committed in the opposite order they began
  const a = new Client({ connectionString: fx.source });
  const b = new Client({ connectionString: fx.source });
  await Promise.all([a.connect(), b.connect()]);
  await a.query('CREATE TABLE interleave (id int PRIMARY KEY, who text)');
  await a.query('BEGIN');
  await a.query("INSERT INTO interleave VALUES (1, 'a')");
  await b.query('BEGIN');
  await b.query("INSERT INTO interleave VALUES (2, 'b')");
  await b.query('COMMIT');
  await a.query("INSERT INTO interleave VALUES (3, 'a')");
  await a.query('COMMIT');
  await Promise.all([a.end(), b.end()]);
  // an update that leaves the big TOASTed column alone
  await fx.cluster.query("UPDATE type_zoo SET c_text = 'changed' WHERE id = 1");
  await fx.cluster.query('ALTER TABLE interleave ADD COLUMN note text');

  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);

  const txns = await fx.transactions();
  for (let i = 1; i < txns.length; i++) expect((txns[i]?.commitLsn as bigint) > (txns[i - 1]?.commitLsn as bigint)).toBe(true);

  // type zoo: decoded text equals the source's own text output, column by column
  const zooTxn = txns.find((t) => t.messages.some((m) => m.tag === 'I' && t.relations.get(m.relationId)?.name === 'type_zoo'));
  expect(zooTxn).toBeDefined();
  const inserts = (zooTxn?.messages ?? []).filter((m): m is InsertMessage => m.tag === 'I');
  // each column's output function text, unparsed, under the archive's session settings
  const source = new Client({ connectionString: fx.source, options: DECODING_SESSION_OPTIONS, types: { getTypeParser: () => (text: string) => text } });
  await source.connect();
  try {
    for (const insert of inserts) {
      const id = valueText(insert.newTuple[0]);
      const select = TYPE_ZOO_COLUMNS.join(', ');
      // the row as it was inserted (row 1 was updated later: compare its other columns)
      const { rows } = await source.query<Record<string, string | null>>({
        text: `SELECT ${select} FROM type_zoo WHERE id = $1`,
        values: [id],
        rowMode: 'array',
      } as never);
      const expected = rows[0] as unknown as (string | null)[];
      TYPE_ZOO_COLUMNS.forEach((column, i) => {
        if (id === '1' && column === 'c_text') return;
        expect({ column, value: valueText(insert.newTuple[i]) }).toEqual({ column, value: expected[i] });
      });
    }
  } finally {
    await source.end();
  }

  // interleaved: b's transaction is archived before a's, each whole
  const interleaveRows = txns
    .map((t) =>
      t.messages.filter((m): m is InsertMessage => m.tag === 'I' && t.relations.get(m.relationId)?.name === 'interleave').map((m) => valueText(m.newTuple[0])),
    )
    .filter((ids) => ids.length > 0);
  expect(interleaveRows).toEqual([['2'], ['1', '3']]);

  // unchanged TOAST value stays distinct from NULL
  const update = txns.flatMap((t) => t.messages.filter((m): m is UpdateMessage => m.tag === 'U')).at(-1);
  const bigIndex = TYPE_ZOO_COLUMNS.indexOf('c_big_text');
  expect(update?.newTuple[bigIndex]).toEqual({ kind: 'unchanged' });
  expect(valueText(update?.newTuple[TYPE_ZOO_COLUMNS.indexOf('c_text')])).toBe('changed');

  // DDL arrives in-band at its transaction
  const ddl = txns.flatMap((t) => t.messages.filter((m): m is LogicalMessage => m.tag === 'M' && m.prefix === 'pitr.ddl'));
  expect(ddl.map((m) => (JSON.parse(m.content.toString()) as { query: string }).query)).toEqual(
    expect.arrayContaining(['CREATE TABLE interleave (id int PRIMARY KEY, who text)', 'ALTER TABLE interleave ADD COLUMN note text']),
  );
  // segments are plain LZ4 frames: the standard lz4 tool reads them
  const names = await fx.repository().segmentManifestNames();
  const largest = (await Promise.all(names.map((n) => fx.repository().readSegmentManifest(n)))).sort((x, y) => y.rawBytes - x.rawBytes)[0];
  const raw = execFileSync('lz4', ['-dc', objectFile(fx.repoDir, `${largest?.name}.lz4`)], { maxBuffer: 1 << 28 });
  expect(raw.length).toBe(largest?.rawBytes);
  expect(raw.subarray(0, 8).toString()).toBe('PITRSEG1');

  // heartbeats carry sequences
  expect(txns.some((t) => t.messages.some((m) => m.tag === 'M' && m.prefix === 'pitr.heartbeat'))).toBe(true);
});

test('a second archiver on the same slot and repository refuses to start', async () => {
  const first = fx.startArchiver();
  await first.waitForState('streaming');
  const second = fx.startArchiver();
  const code = await second.wait();
  expect(code).toBe(6);
  expect(second.stderr).toMatch(/pitr: error: replication slot "pitr" is in use by another archiver/);
  expect(await first.stop()).toBe(0);
});
