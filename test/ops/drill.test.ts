import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeCheckedJson, encodeCheckedJson } from '../../src/archive/checked-json';
import type { BackupManifest } from '../../src/archive/backup-manifest';
import type { DrillReport } from '../../src/ops/drill';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr } from '../harness/pitr-process';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';

let fx: ArchiveFixture;
const copies = new RepoCopies('pitr-drill-');
const files = (dir: string): string[] => listFiles(dir);
const copyRepo = (): string => copies.copy(fx.repoDir);

async function databaseExists(name: string): Promise<boolean> {
  return (await fx.cluster.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).length === 1;
}

const EXPECTED = { 'public.items': 70, 'public.events': 3, 'public.later': 2, 'public.quiet': 5 };

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE items (id serial PRIMARY KEY, v text);
    INSERT INTO items (v) SELECT 'v' || g FROM generate_series(1, 50) g;
    CREATE TABLE events (id int PRIMARY KEY, what text);
    INSERT INTO events SELECT g, 'e' || g FROM generate_series(1, 20) g;
    CREATE TABLE quiet (id int PRIMARY KEY);
    INSERT INTO quiet SELECT generate_series(1, 5);`);
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await fx.cluster.psql(`INSERT INTO items (v) SELECT 'pre' || g FROM generate_series(1, 5) g;`);
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  expect(backup.code).toBe(0);
  await fx.cluster.psql(`
    INSERT INTO items (v) SELECT 'w' || g FROM generate_series(1, 25) g;
    UPDATE items SET v = v || '!' WHERE id % 2 = 0;
    DELETE FROM items WHERE id <= 10;
    INSERT INTO events VALUES (21, 'x');
    TRUNCATE events;
    INSERT INTO events VALUES (1, 'a'), (2, 'b'), (3, 'c');
    DELETE FROM events WHERE id = 3; INSERT INTO events VALUES (4, 'd');
    CREATE TABLE later (id int PRIMARY KEY, t text);
    INSERT INTO later VALUES (1, 'a'), (2, 'b'), (3, 'c');
    DELETE FROM later WHERE id = 3;`);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
}, 60_000);

afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

test('a drill restores, checks every table and its row count, reports RTO/RPO and drops the scratch database', async () => {
  const result = await runPitr(['drill', '--repo', fx.repoDir, '--target', fx.cluster.url('drill_one'), '--source', fx.source, '--json']);
  expect(result.stderr).not.toMatch(/pitr: error/);
  expect(result.code).toBe(0);
  const report = JSON.parse(result.stdout) as DrillReport;
  expect(report.ok).toBe(true);
  expect(report.kept).toBe(false);
  expect(report.backup.id).toMatch(/^[0-9A-F]{16}-\d{8}T\d{6}Z$/);
  expect(report.backup.alignedLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  expect(report.lastApplied?.commitLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  expect(report.rtoSeconds).toBeGreaterThan(0);
  expect(report.rpoSeconds).toEqual(expect.any(Number));
  expect(report.rpoSeconds).toBeLessThan(120);
  expect(report.target).toContain('drill_one');
  const byName = Object.fromEntries(report.tables.map((t) => [t.name, t]));
  for (const [name, rows] of Object.entries(EXPECTED)) {
    expect(byName[name]).toMatchObject({ name, expectedRows: rows, rows, ok: true, sourceMatches: true });
  }
  expect(report.tables.every((t) => t.ok)).toBe(true);
  expect(report.source?.compared).toBe(true);
  expect(await databaseExists('drill_one')).toBe(false);
});

test('--keep keeps the scratch database; human output lists the tables', async () => {
  const result = await runPitr(['drill', '--repo', fx.repoDir, '--target', fx.cluster.url('drill_kept'), '--keep']);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/RTO \(restore time\): [\d.]+ s/);
  expect(result.stdout).toMatch(/^ {2}ok +public\.items +expected 70, restored 70$/m);
  expect(result.stdout).toMatch(/drill passed: \d+ table\(s\) checked/);
  expect(result.stdout).toContain('scratch database kept');
  expect(await databaseExists('drill_kept')).toBe(true);
  const rows = await fx.cluster.query<{ n: string }>('SELECT count(*)::text AS n FROM later', [], 'drill_kept');
  expect(rows[0]?.n).toBe('2');
  await fx.cluster.query('DROP DATABASE drill_kept WITH (FORCE)');
});

test('a drill refuses a non-empty target and leaves it alone', async () => {
  await fx.cluster.query('CREATE DATABASE drill_busy');
  await fx.cluster.query('CREATE TABLE precious (id int)', [], 'drill_busy');
  const result = await runPitr(['drill', '--repo', fx.repoDir, '--target', fx.cluster.url('drill_busy'), '--json']);
  expect(result.code).toBe(5);
  expect(result.stderr).toMatch(/not empty/);
  expect(await databaseExists('drill_busy')).toBe(true);
  await fx.cluster.query('DROP DATABASE drill_busy WITH (FORCE)');
});

test('a drill over a damaged repository fails with the error and drops the scratch database', async () => {
  // a flipped byte in the last segment (after the backup): the restore stops on its checksum
  const corrupt = copyRepo();
  const segment = files(corrupt)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.lz4'))
    .sort()
    .pop() as string;
  const bytes = readFileSync(objectFile(corrupt, segment));
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  writeFileSync(objectFile(corrupt, segment), bytes);
  const flipped = await runPitr(['drill', '--repo', corrupt, '--target', fx.cluster.url('drill_corrupt'), '--json']);
  expect(flipped.code).toBe(7);
  expect(JSON.parse(flipped.stdout)).toMatchObject({ error: { kind: 'Integrity', message: expect.stringMatching(/corrupt|sha256/) as string } });
  expect(await databaseExists('drill_corrupt')).toBe(false);

  // a deleted backup chunk: the load fails
  const missing = copyRepo();
  const chunk = files(missing).find((f) => f.startsWith('backups/') && f.includes('/data/')) as string;
  unlinkSync(objectFile(missing, chunk));
  const gone = await runPitr(['drill', '--repo', missing, '--target', fx.cluster.url('drill_missing'), '--json']);
  expect(gone.code).toBe(9);
  expect(JSON.parse(gone.stdout)).toMatchObject({ error: { kind: 'NotFound', message: expect.stringContaining(chunk) as string } });
  expect(await databaseExists('drill_missing')).toBe(false);
});

test('a row count that does not match what the backup and archive imply fails the drill with exit 7', async () => {
  // the manifest claims one more row in "quiet" than its chunk holds (checksum re-sealed, so it reads fine)
  const tampered = copyRepo();
  const manifestFile = files(tampered).find((f) => f.startsWith('backups/') && f.endsWith('/manifest.json')) as string;
  const manifest = decodeCheckedJson<BackupManifest>(readFileSync(path.join(tampered, manifestFile)), manifestFile);
  const quiet = manifest.tables.find((t) => t.name === 'quiet');
  if (!quiet) throw new Error('quiet not in the backup');
  quiet.rows += 1;
  writeFileSync(path.join(tampered, manifestFile), encodeCheckedJson(manifest));
  const result = await runPitr(['drill', '--repo', tampered, '--target', fx.cluster.url('drill_bad'), '--json']);
  expect(result.code).toBe(7);
  const report = JSON.parse(result.stdout) as DrillReport;
  expect(report.ok).toBe(false);
  expect(report.tables.find((t) => t.name === 'public.quiet')).toEqual({ name: 'public.quiet', expectedRows: 6, rows: 5, ok: false });
  expect(report.tables.filter((t) => !t.ok)).toHaveLength(1);
  expect(await databaseExists('drill_bad')).toBe(false);
  const human = await runPitr(['drill', '--repo', tampered, '--target', fx.cluster.url('drill_bad')]);
  expect(human.code).toBe(7);
  expect(human.stdout).toMatch(/^ {2}MISMATCH public\.quiet +expected 6, restored 5$/m);
  expect(human.stdout).toMatch(/drill FAILED: 1 of \d+ table\(s\) do not match/);
});
