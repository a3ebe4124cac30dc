import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PgCluster, freePort } from '../harness/pg-cluster';
import { runPitr } from '../harness/pitr-process';

let cluster: PgCluster;
let repoDir: string;

beforeAll(async () => {
  cluster = await PgCluster.start({ password: 's3cret-pw' });
  repoDir = mkdtempSync(path.join(tmpdir(), 'pitr-bad-'));
});

afterAll(async () => {
  await cluster.destroy();
  rmSync(repoDir, { recursive: true, force: true });
});

/** One line of error (plus an optional hint line), the right exit code, and no password anywhere. */
function expectOneLineError(result: { code: number | null; stderr: string; stdout: string }, code: number, pattern: RegExp): void {
  expect(result.code).toBe(code);
  const lines = result.stderr.split('\n').filter((l) => l.startsWith('pitr: error:'));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr + result.stdout).not.toContain('s3cret-pw');
}

test('wrong password', async () => {
  const result = await runPitr(['init', '--source', cluster.url('postgres', 'postgres', 'wrong-pw'), '--repo', repoDir]);
  expectOneLineError(result, 4, /cannot connect to postgresql:\/\/postgres:\*\*\*\*@127\.0\.0\.1:\d+\/postgres: authentication failed/);
  expect(result.stderr).not.toContain('wrong-pw');
});

test('unreachable host', async () => {
  const port = await freePort();
  const result = await runPitr(['archive', '--source', `postgresql://postgres:s3cret-pw@127.0.0.1:${port}/postgres`, '--repo', repoDir]);
  expectOneLineError(result, 4, /connection refused/);
});

test('malformed URL and unknown flag', async () => {
  expectOneLineError(await runPitr(['init', '--source', 'mysql://x', '--repo', repoDir]), 2, /invalid connection URL/);
  expectOneLineError(await runPitr(['archive', '--sauce', 'x']), 2, /archive: unknown option --sauce/);
  expectOneLineError(await runPitr(['archive', '--segment-age', 'soon']), 2, /invalid value for --segment-age: "soon"/);
  expectOneLineError(await runPitr(['frobnicate']), 2, /unknown command "frobnicate"/);
});

test('missing privileges: every failed check is named with its fix, and nothing is created', async () => {
  await cluster.query("CREATE ROLE weak LOGIN PASSWORD 'weak-pw'");
  await cluster.query('CREATE TABLE nokey (a int, b text)');
  const result = await runPitr(['init', '--source', cluster.url('postgres', 'weak', 'weak-pw'), '--repo', repoDir]);
  expect(result.code).toBe(3);
  expect(result.stderr).toContain('role "weak" is not a superuser');
  expect(result.stderr).toContain('role "weak" may not replicate');
  expect(result.stderr).toContain('fix: ALTER ROLE "weak" REPLICATION;');
  expect(result.stderr).toContain('table "public"."nokey" has no primary key and no usable replica identity');
  expect(result.stderr).toContain('fix: ALTER TABLE "public"."nokey" REPLICA IDENTITY FULL;');
  expect(await cluster.query('SELECT 1 FROM pg_publication')).toHaveLength(0);
  expect(await cluster.query('SELECT 1 FROM pg_replication_slots')).toHaveLength(0);
  await cluster.query('DROP TABLE nokey');
});

test('wal_level not logical', async () => {
  const replica = await PgCluster.start({ walLevel: 'replica' });
  try {
    const result = await runPitr(['init', '--source', replica.url(), '--repo', repoDir]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`wal_level is "replica", logical decoding needs "logical"`);
    expect(result.stderr).toContain("fix: ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL");
  } finally {
    await replica.destroy();
  }
});

test('a repository that belongs to another database is refused', async () => {
  const ok = await runPitr(['init', '--source', cluster.url(), '--repo', repoDir]);
  expect(ok.code).toBe(0);
  const other = await PgCluster.start();
  try {
    const result = await runPitr(['init', '--source', other.url(), '--repo', repoDir]);
    expectOneLineError(result, 5, /repository .* belongs to another database \(system identifier \d+/);
    expect(await other.query('SELECT 1 FROM pg_replication_slots')).toHaveLength(0);
    const archive = await runPitr(['archive', '--source', other.url(), '--repo', repoDir]);
    expectOneLineError(archive, 5, /belongs to another database/);
  } finally {
    await other.destroy();
  }
});

test('an unwritable repository', async () => {
  const file = path.join(repoDir, 'a-file');
  writeFileSync(file, 'x');
  const result = await runPitr(['init', '--source', cluster.url(), '--repo', path.join(file, 'repo')]);
  expectOneLineError(result, 5, /cannot create directory .*a-file\/repo/);
});

test('archive before init names the missing slot', async () => {
  const fresh = await PgCluster.start();
  const dir = mkdtempSync(path.join(tmpdir(), 'pitr-fresh-'));
  try {
    const result = await runPitr(['archive', '--source', fresh.url(), '--repo', dir]);
    expectOneLineError(result, 3, /replication slot "pitr" does not exist/);
    expect(result.stderr).toContain('hint: run "pitr init" first');
  } finally {
    await fresh.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
