import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from 'pg';
import type { UndoResult } from '../../src/ops/undo-sql';
import { ArchiveFixture } from '../harness/archive-fixture';
import { freePort } from '../harness/pg-cluster';
import { runPitr, type RunResult } from '../harness/pitr-process';

jest.setTimeout(60_000);

const execFileAsync = promisify(execFile);
const TABLES = ['parent', 'child', 'grandchild', 'remark', 'node', 'account', 'login'] as const;
type Table = (typeof TABLES)[number];
type Snapshot = Record<Table, string[]>;
/** The rows a transaction concerns, as a condition per table (tables left out: none of their rows). */
type Rows = Partial<Record<Table, string>>;
type Name = 'cascade' | 'manual' | 'chain' | 'insert' | 'mixed' | 'tree' | 'rekey';

let fx: ArchiveFixture;
let outDir: string;
/** The transactions, each with its rows as they were just before it ran. */
const txns = {} as Record<Name, { xid: number; rows: Rows; before: Snapshot }>;

/** The rows matching `rows`, or with `others` every other row: each case is checked on its own rows only. */
async function snapshot(rows: Rows, others = false): Promise<Snapshot> {
  const result = {} as Snapshot;
  for (const t of TABLES) {
    const where = `(${rows[t] ?? 'false'}) IS ${others ? 'NOT TRUE' : 'TRUE'}`;
    result[t] = (await fx.cluster.query<{ r: string }>(`SELECT row_to_json(t)::text AS r FROM ${t} t WHERE ${where} ORDER BY id`)).map((r) => r.r);
  }
  return result;
}

async function transaction(client: Client, name: Name, rows: Rows, statements: string[]): Promise<void> {
  const before = await snapshot(rows);
  await client.query('BEGIN');
  const xid = Number((await client.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0]?.x);
  for (const sql of statements) await client.query(sql);
  await client.query('COMMIT');
  txns[name] = { xid, rows, before };
}

/** Applies an undo script: the transaction's rows are back as they were, and no other row changed. */
async function expectUndone(name: Name, sql: string): Promise<void> {
  const others = await snapshot(txns[name].rows, true);
  expect(await apply(sql)).toEqual({ ok: true, stderr: '' });
  expect(await snapshot(txns[name].rows)).toEqual(txns[name].before);
  expect(await snapshot(txns[name].rows, true)).toEqual(others);
}

/** Applies a script expected to fail on a foreign key: nothing of it stays. */
async function expectRefused(sql: string): Promise<void> {
  const everything = await snapshot({}, true);
  const result = await apply(sql);
  expect(result.ok).toBe(false);
  expect(result.stderr).toContain('violates foreign key constraint');
  expect(await snapshot({}, true)).toEqual(everything);
}

function undo(name: Name, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return runPitr(['undo', '--repo', fx.repoDir, '--xid', String(txns[name].xid), ...args], env);
}

async function undoJson(name: Name, args: string[] = []): Promise<{ result: UndoResult; stderr: string }> {
  const run = await undo(name, ['--json', ...args]);
  expect({ code: run.code, stderr: run.code === 0 ? '' : run.stderr }).toEqual({ code: 0, stderr: '' });
  return { result: JSON.parse(run.stdout) as UndoResult, stderr: run.stderr };
}

/** Applies a script the way the runbook does: psql -f, stopping at the first error (the script is one transaction). */
async function apply(sql: string): Promise<{ ok: boolean; stderr: string }> {
  const file = path.join(outDir, `undo-${Date.now()}-${Math.random().toString(36).slice(2)}.sql`);
  writeFileSync(file, sql);
  try {
    await execFileAsync(path.join(fx.cluster.binDir, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', fx.source, '-f', file], { encoding: 'utf8' });
    return { ok: true, stderr: '' };
  } catch (error) {
    return { ok: false, stderr: String((error as { stderr?: string }).stderr) };
  }
}

/** Positions in the script of the first line matching each pattern. */
function positions(sql: string, ...patterns: RegExp[]): number[] {
  const lines = sql.split('\n');
  return patterns.map((p) => lines.findIndex((l) => p.test(l)));
}

/** Each pattern matches a line of the script (past its first), each after the one before. */
function expectInOrder(sql: string, ...patterns: RegExp[]): void {
  const found = positions(sql, ...patterns);
  expect(found[0]).toBeGreaterThan(0);
  for (let i = 1; i < found.length; i++) expect(found[i - 1]).toBeLessThan(found[i] as number);
}

beforeAll(async () => {
  outDir = mkdtempSync(path.join(tmpdir(), 'pitr-undo-fk-'));
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, v text);
    CREATE TABLE grandchild (id int PRIMARY KEY, child_id int NOT NULL REFERENCES child ON DELETE CASCADE, v text);
    CREATE TABLE remark (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE SET NULL, body text);
    CREATE TABLE node (id int PRIMARY KEY, parent_id int REFERENCES node ON DELETE CASCADE, label text);
    CREATE TABLE account (id int PRIMARY KEY, name text);
    CREATE TABLE login (id int PRIMARY KEY, account_id int REFERENCES account ON UPDATE CASCADE DEFERRABLE, at text);
    ALTER TABLE parent REPLICA IDENTITY FULL; ALTER TABLE child REPLICA IDENTITY FULL; ALTER TABLE grandchild REPLICA IDENTITY FULL;
    ALTER TABLE remark REPLICA IDENTITY FULL; ALTER TABLE node REPLICA IDENTITY FULL;
    ALTER TABLE account REPLICA IDENTITY FULL; ALTER TABLE login REPLICA IDENTITY FULL;
    INSERT INTO parent SELECT i, 'p' || i FROM unnest('{1,2,3,4,6,8}'::int[]) i;
    INSERT INTO child VALUES (11, 1, 'a'), (12, 1, 'b'), (21, 2, NULL), (31, 3, 'c'), (32, 3, 'd'), (41, 4, 'e'), (42, 4, 'f'), (61, 6, 'g');
    INSERT INTO grandchild VALUES (311, 31, 'x'), (312, 31, 'y'), (321, 32, 'z');
    INSERT INTO remark VALUES (101, 1, 'on one'), (102, 6, 'on six'), (103, 2, 'on two');
    INSERT INTO node VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 1, 'b'), (4, 2, 'a.a'), (5, NULL, 'other'), (6, 5, 'c');
    INSERT INTO account VALUES (10, 'ten'), (30, 'thirty');
    INSERT INTO login VALUES (1, 10, 'mon'), (2, 10, 'tue'), (3, 30, 'wed');`);
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await fx.cluster.withClient(async (c) => {
    // a delete cascading to child (and setting remark.parent_id to NULL)
    await transaction(c, 'cascade', { parent: 'id IN (1, 2)', child: 'parent_id IN (1, 2)', remark: 'id IN (101, 103)' }, [
      'DELETE FROM parent WHERE id IN (1, 2)',
    ]);
    // the same by hand: children first, then the parent
    await transaction(c, 'manual', { parent: 'id = 4', child: 'parent_id = 4' }, ['DELETE FROM child WHERE parent_id = 4', 'DELETE FROM parent WHERE id = 4']);
    // three levels: parent -> child -> grandchild
    await transaction(c, 'chain', { parent: 'id = 3', child: 'parent_id = 3', grandchild: 'child_id IN (31, 32)' }, ['DELETE FROM parent WHERE id = 3']);
    await transaction(c, 'insert', { parent: 'id = 5', child: 'parent_id = 5', grandchild: 'child_id IN (51, 52)' }, [
      "INSERT INTO parent VALUES (5, 'p5')",
      "INSERT INTO child VALUES (51, 5, 'h'), (52, 5, 'i')",
      "INSERT INTO grandchild VALUES (511, 51, 'w')",
    ]);
    // both directions in one transaction, and a key changed and then referenced
    await transaction(c, 'mixed', { parent: 'id IN (6, 7, 8, 9)', child: 'id IN (61, 71, 91)', remark: 'id = 102' }, [
      'DELETE FROM parent WHERE id = 6',
      "INSERT INTO parent VALUES (7, 'p7')",
      "INSERT INTO child VALUES (71, 7, 'j')",
      'UPDATE parent SET id = 9 WHERE id = 8',
      "INSERT INTO child VALUES (91, 9, 'k')",
    ]);
    // a tree whose rows reference each other
    await transaction(c, 'tree', { node: 'true' }, ['DELETE FROM node WHERE id = 1']);
    // a key changed under ON UPDATE CASCADE: the parent's and the children's changes depend on each other
    await transaction(c, 'rekey', { account: 'true', login: 'true' }, ['UPDATE account SET id = 20 WHERE id = 10']);
  });
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
});
afterAll(async () => {
  rmSync(outDir, { recursive: true, force: true });
  await fx?.destroy();
});

// Each case checks its own rows and that no other row changed, so the cases do not depend on each other.

test('a self-referencing table whose rows reference each other: reverse order, constraints deferred, a warning that names them', async () => {
  const alone = await undo('tree');
  expect({ code: alone.code, stderr: alone.stderr }).toEqual({ code: 0, stderr: '' }); // one table: nothing to warn about

  const { result, stderr } = await undoJson('tree', ['--source', fx.source]);
  expect(result.order).toBe('deferred');
  expect(result.sql).toMatch(/^BEGIN;\n(SET LOCAL .*\n)+SET CONSTRAINTS ALL DEFERRED;\n/m);
  const [warning] = result.warnings;
  expect(result.warnings).toHaveLength(1);
  expect(warning?.table).toBe('public.node');
  expect(warning?.message).toContain('foreign keys of public.node');
  expect(warning?.message).toContain('ALTER TABLE "public"."node" ALTER CONSTRAINT "node_parent_id_fkey" DEFERRABLE;');
  expect(stderr).toBe(`pitr: warning: ${warning?.message}\n`);
  expect(result.sql).toContain(`-- WARNING: ${warning?.message}\n`);

  // as the warning says: the constraint is not deferrable, so the script fails and changes nothing
  await expectRefused(result.sql);

  await fx.cluster.psql('ALTER TABLE "public"."node" ALTER CONSTRAINT "node_parent_id_fkey" DEFERRABLE;');
  const again = await undoJson('tree', ['--source', fx.source]);
  expect(again.result.order).toBe('deferred');
  expect(again.result.warnings[0]?.message).toContain('which suffices as these constraints are DEFERRABLE');
  await expectUndone('tree', again.result.sql);
});

test('a key change that cascaded (ON UPDATE CASCADE) falls back to deferred constraints, enough for a deferrable key', async () => {
  const { result, stderr } = await undoJson('rekey', ['--source', fx.source]);
  expect(result.order).toBe('deferred');
  expect(result.warnings.map((w) => w.table)).toEqual(['public.account, public.login']);
  expect(result.warnings[0]?.message).toContain('(their rows depend on each other in a cycle; login_account_id_fkey)');
  expect(result.warnings[0]?.message).toContain('which suffices as these constraints are DEFERRABLE');
  expect(stderr).toBe(`pitr: warning: ${result.warnings[0]?.message}\n`);
  await expectUndone('rekey', result.sql);
});

test('deletes and inserts both ways in one transaction, and a key changed then referenced, come back row for row', async () => {
  const plain = await undo('mixed');
  expect(plain.code).toBe(0);
  expect(plain.stderr).toContain('pitr: warning: transaction');
  expect(plain.stderr).toContain('public.child, public.parent, public.remark');
  await expectRefused(plain.stdout);

  const { result, stderr } = await undoJson('mixed', ['--source', fx.source]);
  expect(stderr).toBe('');
  expect(result).toMatchObject({ order: 'foreign-keys', warnings: [] });
  const [delChild91, keyBack, delChild71, delParent7, insParent6, remarkBack, insChild61] = positions(
    result.sql,
    /^DELETE FROM "public"."child" .*"id" = '91'/,
    /^UPDATE "public"."parent" SET "id" = '8'/,
    /^DELETE FROM "public"."child" .*"id" = '71'/,
    /^DELETE FROM "public"."parent" .*"id" = '7'/,
    /^INSERT INTO "public"."parent" .*VALUES \('6'/,
    /^UPDATE "public"."remark" SET .*"parent_id" = '6'/,
    /^INSERT INTO "public"."child" .*VALUES \('61'/,
  );
  expect(Math.min(delChild91 as number, delChild71 as number, insParent6 as number)).toBeGreaterThan(0);
  expect(delChild91).toBeLessThan(keyBack as number);
  expect(delChild71).toBeLessThan(delParent7 as number);
  expect(insParent6).toBeLessThan(Math.min(remarkBack as number, insChild61 as number));
  await expectUndone('mixed', result.sql);
});

test('an insert of a parent with children and grandchildren is undone children first', async () => {
  const plain = await undo('insert');
  expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: '' }); // inserts only: reverse order is right

  const { result, stderr } = await undoJson('insert', ['--source', fx.source]);
  expect(stderr).toBe('');
  expect(result.order).toBe('foreign-keys');
  expectInOrder(result.sql, /^DELETE FROM "public"."grandchild"/, /^DELETE FROM "public"."child"/, /^DELETE FROM "public"."parent"/);
  await expectUndone('insert', result.sql);
});

test('a delete cascading over three levels: without a source it warns (and would fail); with PITR_SOURCE it comes back', async () => {
  const plain = await undoJson('chain');
  const [warning] = plain.result.warnings;
  expect(plain.result.order).toBe('reverse');
  expect(warning?.message).toContain('deletes or updates rows of public.child, public.grandchild, public.parent');
  expect(warning?.message).toContain('give --source URL');
  expect(plain.stderr).toBe(`pitr: warning: ${warning?.message}\n`);
  await expectRefused(plain.result.sql);

  const run = await undo('chain', [], { PITR_SOURCE: fx.source });
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  expectInOrder(run.stdout, /^INSERT INTO "public"."parent"/, /^INSERT INTO "public"."child"/, /^INSERT INTO "public"."grandchild"/);
  await expectUndone('chain', run.stdout);
});

test('children deleted by hand before their parent keep reverse order', async () => {
  const { result, stderr } = await undoJson('manual', ['--source', fx.source]);
  expect(stderr).toBe('');
  expect(result.order).toBe('foreign-keys');
  expect(result.sql).not.toContain('a referenced row comes back before'); // nothing moved
  await expectUndone('manual', result.sql);
});

test('a delete that cascaded and set null comes back parents first', async () => {
  const plain = await undo('cascade');
  expect(plain.stderr).toContain('public.child, public.parent, public.remark');

  const file = path.join(outDir, 'cascade.sql');
  const run = await undo('cascade', ['--source', fx.source, '--output', file]);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  expect(run.stdout).toMatch(/^wrote 7 statement\(s\) reversing transaction \d+ to /);
  const sql = readFileSync(file, 'utf8');
  expect(sql).toContain('ordered by the foreign keys of postgresql://postgres@127.0.0.1:');
  await expectUndone('cascade', sql);
});

test("a source without the transaction's tables (another database) is warned about", async () => {
  const { result, stderr } = await undoJson('cascade', ['--source', fx.cluster.url('template1')]);
  expect(result.order).toBe('foreign-keys');
  expect(result.warnings.map((w) => w.message)).toEqual([
    `the source ${fx.cluster.url('template1')} has no table public.child, public.parent, public.remark: the statements are ordered without their foreign keys; check that --source names the archived database`,
  ]);
  expect(stderr).toContain('pitr: warning: the source ');
});

test('a source that cannot be reached is an error (exit 4), not a silent fallback', async () => {
  const port = await freePort();
  const run = await undo('cascade', ['--source', `postgresql://postgres@127.0.0.1:${port}/postgres`]);
  expect(run.code).toBe(4);
  expect(run.stdout).toBe('');
  expect(run.stderr).toContain(`cannot connect to postgresql://postgres@127.0.0.1:${port}/postgres: connection refused`);
});
