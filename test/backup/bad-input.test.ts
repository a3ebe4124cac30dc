import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findPgTool } from '../../src/backup/pg-tools';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type RunResult } from '../harness/pitr-process';
import { backupObjects, manifestsIn } from './backup-helpers';

let fx: ArchiveFixture;
let scratch: string;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  scratch = mkdtempSync(path.join(tmpdir(), 'pitr-bad-input-'));
  await fx.cluster.psql(`CREATE TABLE visible (id integer PRIMARY KEY, payload text);
    INSERT INTO visible SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
    CREATE TABLE secret (id integer PRIMARY KEY);
    INSERT INTO secret VALUES (1);
    CREATE SEQUENCE ticket_seq;
    SELECT nextval('ticket_seq') FROM generate_series(1, 5);
    CREATE ROLE backup_role LOGIN REPLICATION;
    GRANT SELECT ON visible TO backup_role;
    GRANT SELECT ON SEQUENCE ticket_seq TO backup_role;
    CREATE ROLE seq_role LOGIN REPLICATION;
    GRANT SELECT ON visible, secret TO seq_role;`);
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => {
  await fx.destroy();
  rmSync(scratch, { recursive: true, force: true });
});
afterEach(() => {
  expect(manifestsIn(fx.repoDir)).toEqual([]);
  expect(backupObjects(fx.repoDir)).toEqual([]);
});

const HINT = 'hint: install the PostgreSQL 15 client programs (Debian: apt-get install postgresql-client-15) or pass --pg-dump /path/to/pg_dump';

function backup(extra: string[], source = fx.source, repo = fx.repoDir): Promise<RunResult> {
  return runPitr(['backup', '--source', source, '--repo', repo, ...extra]);
}

/** The error lines of a failed run: the log lines (JSON) left out. */
const errorLines = (result: RunResult): string[] => result.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));

test('a --pg-dump that does not exist is a missing tool (exit 8)', async () => {
  const result = await backup(['--pg-dump', '/nonexistent/pg_dump']);
  expect(result.code).toBe(8);
  expect(result.stderr).toBe(`pitr: error: pg_dump not found at /nonexistent/pg_dump\n${HINT}\n`);
  expect(result.stdout).toBe('');
});

test('a --pg-dump older than the server is refused, naming its version (exit 8)', async () => {
  const fake = path.join(mkdtempSync(path.join(scratch, 'old-')), 'pg_dump');
  writeFileSync(fake, '#!/bin/sh\necho "pg_dump (PostgreSQL) 12.3"\n');
  chmodSync(fake, 0o755);
  const result = await backup(['--pg-dump', fake, '--json']);
  expect(result.code).toBe(8);
  expect(errorLines(result)).toEqual([`pitr: error: ${fake} is version 12, older than the server (15)`, HINT]);
  expect(JSON.parse(result.stdout)).toEqual({
    formatVersion: 1,
    error: { kind: 'MissingTool', code: 8, message: `${fake} is version 12, older than the server (15)`, hint: HINT.slice('hint: '.length) },
  });
});

test('a --pg-dump without pg_restore beside it is a missing tool (exit 8)', async () => {
  const realDump = await findPgTool('pg_dump', 15);
  const dir = mkdtempSync(path.join(scratch, 'lonely-'));
  symlinkSync(realDump.path, path.join(dir, 'pg_dump'));
  const result = await backup(['--pg-dump', path.join(dir, 'pg_dump')]);
  expect(result.code).toBe(8);
  expect(errorLines(result)).toEqual([`pitr: error: pg_restore not found at ${path.join(dir, 'pg_restore')}`, HINT]);
});

test('a role that may not read one table gets an error naming it, and nothing is left behind', async () => {
  const result = await backup(['--jobs', '1'], fx.cluster.url('postgres', 'backup_role'));
  expect(errorLines(result)).toEqual([
    'pitr: error: permission denied to read table "public"."secret"',
    'hint: GRANT SELECT ON "public"."secret" TO <backup role>; or run the backup as a superuser',
  ]);
  expect(result.code).toBe(3);
  // it did get started (and stored the other table) before it failed
  expect(result.stderr).toContain('"event":"backup_started"');
  expect(await fx.cluster.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pitr_backup_%'")).toEqual([]);
});

test('a role that may not read a sequence gets an error naming it, not a backup that would reset the sequence', async () => {
  // what the role would see: the same NULL as for a never-used sequence
  const seen = await fx.cluster.withClient(async (c) => {
    await c.query('SET ROLE seq_role');
    return (await c.query("SELECT last_value FROM pg_sequences WHERE sequencename = 'ticket_seq'")).rows;
  });
  expect(seen).toEqual([{ last_value: null }]);
  const result = await backup([], fx.cluster.url('postgres', 'seq_role'));
  expect(errorLines(result)).toEqual([
    'pitr: error: permission denied to read sequence "public"."ticket_seq"',
    'hint: GRANT SELECT ON SEQUENCE "public"."ticket_seq" TO <backup role>; or run the backup as a superuser',
  ]);
  expect(result.code).toBe(3);
});

test('an unwritable repository is a repository error (exit 5)', async () => {
  const file = path.join(scratch, 'a-file');
  writeFileSync(file, 'not a directory\n');
  const repo = path.join(file, 'repo');
  const result = await backup([], fx.source, repo);
  expect(result.code).toBe(5);
  expect(errorLines(result)).toEqual([
    `pitr: error: cannot create directory ${repo}: a part of the repository path ${repo} is a file, not a directory`,
    'hint: point --repo at a directory',
  ]);
  expect(manifestsIn(scratch)).toEqual([]);
});
