import { TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL } from './fixtures/type-zoo';
import { ArchiveFixture } from './harness/archive-fixture';
import { runPitr } from './harness/pitr-process';

let fx: ArchiveFixture;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(TYPE_ZOO_SETUP_SQL);
  await fx.cluster.psql(`
    CREATE TABLE dup (a int, b text) ; ALTER TABLE dup REPLICA IDENTITY FULL;
    CREATE TABLE parts (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
    CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100);
    CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (100) TO (200);
    CREATE TABLE gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED);
    INSERT INTO dup VALUES (1, 'x'), (1, 'x'), (2, 'y');`);
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => fx.destroy());

async function fingerprint(db: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of ['type_zoo', 'dup', 'parts', 'gen', 'later']) {
    const rows = await fx.cluster
      .query<{ f: string }>(`SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) || ':' || count(*) AS f FROM ${t} x`, [], db)
      .catch(() => [{ f: 'absent' }]);
    out[t] = (rows[0] as { f: string }).f;
  }
  return out;
}

test('latest restore equals the source after inserts, TOAST-preserving updates, duplicate rows, partitions, DDL and truncate', async () => {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir])).code).toBe(0);
  await fx.cluster.psql(TYPE_ZOO_INSERT_SQL);
  await fx.cluster.psql(`
    UPDATE type_zoo SET c_text = 'changed' WHERE id = 1;
    DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = 1 LIMIT 1);
    UPDATE dup SET b = 'z' WHERE a = 2;
    INSERT INTO parts SELECT g, g % 200, 'v' || g FROM generate_series(1, 300) g;
    UPDATE parts SET k = 150 WHERE id = 10;
    INSERT INTO gen (n) SELECT generate_series(1, 20);
    DELETE FROM gen WHERE id % 3 = 0;
    ALTER TABLE gen ADD COLUMN note text DEFAULT 'd';
    UPDATE gen SET note = 'n' || id WHERE id < 5;
    CREATE TABLE later (id int PRIMARY KEY, t text); INSERT INTO later VALUES (1, 'a'), (2, 'b');
    TRUNCATE parts;
    INSERT INTO parts VALUES (1, 1, 'after truncate');`);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  const restore = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('restored'), '--to', 'latest', '--json']);
  expect(restore.stderr).not.toMatch(/pitr: error/);
  expect(restore.code).toBe(0);
  expect(await fingerprint('restored')).toEqual(await fingerprint('postgres'));
  const after = await fx.cluster.query<{ id: number }>('INSERT INTO gen (n) VALUES (99) RETURNING id', [], 'restored');
  const source = await fx.cluster.query<{ id: number }>('INSERT INTO gen (n) VALUES (99) RETURNING id');
  expect(after[0]?.id).toBe(source[0]?.id);
});

test('--dry-run prints the plan and changes nothing', async () => {
  const plan = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('never_created'), '--to', 'latest', '--dry-run', '--json']);
  expect(plan.code).toBe(0);
  const summary = JSON.parse(plan.stdout) as {
    plan: {
      segments: number;
      bytes: number;
      transactions: number;
      changes: number;
      backup: { tables: number; rows: number };
      estimate: { loadSeconds: number; replaySeconds: number };
      window: { earliest: string; latest: string };
    };
    backup: { id: string };
  };
  expect(summary.plan.segments).toBeGreaterThan(0);
  expect(summary.plan.transactions).toBeGreaterThan(0);
  expect(summary.plan.changes).toBeGreaterThanOrEqual(summary.plan.transactions);
  expect(summary.plan.backup.tables).toBeGreaterThan(0);
  expect(summary.plan.estimate.replaySeconds).toBeGreaterThanOrEqual(0);
  expect(summary.plan.window.earliest).toEqual({
    lsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/) as string,
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/) as string,
  });
  expect(await fx.cluster.query("SELECT 1 FROM pg_database WHERE datname = 'never_created'")).toHaveLength(0);
  const human = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('never_created'), '--to', 'latest', '--dry-run']);
  const lines = human.stdout.split('\n');
  expect(lines[0]).toMatch(/^plan for "never_created": up to latest: \S+ \(\d+\/[0-9A-F]+\)$/);
  expect(lines[1]).toMatch(/^ {2}backup {4}\S+, aligned at \d+\/[0-9A-F]+: \d+ tables, [\d,]+ rows, [\d.]+ k?B$/);
  expect(lines[2]).toMatch(/^ {2}replay {4}\d+ segments? \([\d.]+ [kMG]?B stored\): at most [\d,]+ transactions, [\d,]+ changes$/);
  expect(lines[3]).toMatch(/^ {2}estimate {2}about \d+ s \(load [\d.]+ s, replay [\d.]+ s, at the speeds measured on a 2-core machine\)$/);
  expect(lines[4]).toMatch(/^recoverable window: /);
});
