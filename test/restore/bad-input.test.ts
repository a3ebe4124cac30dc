/**
 * Restores that must be refused, each with its exit code and a message a person can act on:
 * unparseable targets (2), targets outside the recoverable window (9, naming the window), a target
 * database that is not empty (5, unless --force), an unreachable target (4).
 */
import { Client } from 'pg';
import { formatLsn, parseLsn, type Lsn } from '../../src/pg/lsn';
import { formatUnixMicros } from '../../src/pg/pg-time';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { freePort } from '../harness/pg-cluster';
import { runPitr, type RunResult } from '../harness/pitr-process';
import { archiveIndex, databaseFingerprints, errorLines, restoreFails, restoreOk, shellLine, userTablesOf, type TxnSummary } from './restore-helpers';

let fx: ArchiveFixture;
let backup: { id: string; alignedLsn: string; startTime: string; endTime: string };
/** source clock before the first backup and before a change it holds (inside the archive, but no backup can give it) */
let beforeBackup = '';
/** source clock after the last change (inside the window) */
let inside = '';
let expectedInside: Fingerprints;
let expectedBefore: Fingerprints;
let index: TxnSummary[] = [];

const sourceNow = async (client: Client): Promise<string> =>
  (
    (await client.query<{ t: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t`)).rows[0] as {
      t: string;
    }
  ).t;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`CREATE TABLE accounts (id integer PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL);
    INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 100) g;`);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  const archiver = fx.startArchiver();
  const client = new Client({ connectionString: fx.source });
  await client.connect();
  try {
    await archiver.waitForState('streaming');
    await new Promise((r) => setTimeout(r, 300)); // the archive begins before beforeBackup
    beforeBackup = await sourceNow(client);
    expectedBefore = await fingerprintDatabase(fx.source);
    // archived, after beforeBackup, and held by the backup: no backup can give the state at beforeBackup
    await client.query(`UPDATE accounts SET balance = balance + 1 WHERE id <= 10`);
    await new Promise((r) => setTimeout(r, 20));
    const b = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
    if (b.code !== 0) throw new Error(`pitr backup failed:\n${b.stderr}`);
    backup = JSON.parse(b.stdout) as typeof backup;
    await client.query(`INSERT INTO accounts SELECT g, 'late ' || g, 0 FROM generate_series(101, 110) g`);
    await client.query(`UPDATE accounts SET balance = balance - 1 WHERE id BETWEEN 50 AND 60`);
    inside = await sourceNow(client);
    expectedInside = await fingerprintDatabase(fx.source);
    await new Promise((r) => setTimeout(r, 1200)); // a heartbeat or two after the last change
    await fx.waitCaughtUp();
  } finally {
    await client.end();
    expect(await archiver.stop()).toBe(0);
  }
  index = await archiveIndex(fx);
}, 90_000);

afterAll(async () => fx?.destroy());

/** The one error line and its optional hint: nothing else on stderr but JSON log lines. */
function expectErrorShape(result: RunResult & { args: string[] }, code: number): string {
  const lines = errorLines(result);
  const shape = {
    command: shellLine(result.args),
    code: result.code,
    signal: result.code === null ? 'killed after the timeout: it hung' : null,
    stderr: lines,
  };
  expect(shape).toEqual({
    command: shape.command,
    code,
    signal: null,
    stderr: lines.length === 2 ? [expect.stringMatching(/^pitr: error: \S/), expect.stringMatching(/^hint: \S/)] : [expect.stringMatching(/^pitr: error: \S/)],
  });
  return lines.join('\n');
}

/** Microseconds since the Unix epoch of any timestamptz text, read by PostgreSQL. */
async function micros(text: string): Promise<bigint | undefined> {
  try {
    const [row] = await fx.cluster.query<{ us: string }>(`SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint::text AS us`, [text]);
    return BigInt((row as { us: string }).us);
  } catch {
    return undefined;
  }
}

/**
 * Problems with how `message` names the recoverable window: its earliest point (the first backup: its
 * aligned LSN, or a time while it ran) and its latest point (the last archived commit: LSN or time).
 */
async function windowProblems(message: string): Promise<string[]> {
  const lsns: Lsn[] = [...message.matchAll(/\b[0-9A-F]{1,8}\/[0-9A-F]{1,8}\b/gi)].map((m) => parseLsn(m[0]));
  const times: bigint[] = [];
  for (const m of message.matchAll(/\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d(?::?\d\d)?)?/g)) {
    const us = await micros(m[0]);
    if (us !== undefined) times.push(us);
  }
  const last = index[index.length - 1] as TxnSummary;
  const lo = ((await micros(backup.startTime)) as bigint) - 1_000_000n;
  const hi = ((await micros(backup.endTime)) as bigint) + 1_000_000n;
  const problems: string[] = [];
  if (!lsns.includes(parseLsn(backup.alignedLsn)) && !times.some((t) => t >= lo && t <= hi))
    problems.push(`does not name the earliest point: the first backup (aligned at ${backup.alignedLsn}, taken ${backup.startTime} to ${backup.endTime})`);
  if (!lsns.includes(last.commitLsn) && !times.includes(last.commitTime))
    problems.push(`does not name the latest point: the last archived commit (${formatLsn(last.commitLsn)} at ${formatUnixMicros(last.commitTime)})`);
  return problems;
}

async function expectNothingRestored(db: string, strict: boolean): Promise<void> {
  const tables = await userTablesOf(fx, db);
  if (strict) expect({ db, tables }).toEqual({ db, tables: null });
  else expect({ db, tables: tables ?? [] }).toEqual({ db, tables: [] });
}

describe('bad usage (exit 2)', () => {
  const UNPARSEABLE = [
    'not a time',
    '2026-02-30 10:00:00',
    '2026-11-22 25:00:00+00',
    '2026-11-22 10:41:59.5+99',
    'lsn:0/XYZ',
    'lsn:12345',
    'xid:abc',
    'xid:-5',
    'mark:',
  ];

  test.each(UNPARSEABLE)('--to %j is refused as bad usage, and nothing is created', async (to) => {
    const db = `bad_${UNPARSEABLE.indexOf(to)}`;
    const result = await restoreFails(fx, db, to);
    const text = expectErrorShape(result, 2);
    expect(text).toContain(to === 'mark:' ? 'mark' : to);
    expect(result.stdout).toBe('');
    await expectNothingRestored(db, true);
  });

  test('--json puts the error on stdout as well', async () => {
    const result = await runPitr([
      ...['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('bad_json'), '--to', 'half past ten'],
      '--json',
      '--log-level',
      'warn',
    ]);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toEqual({
      formatVersion: 1,
      error: { kind: 'Usage', code: 2, message: expect.stringContaining('half past ten'), hint: expect.any(String) },
    });
  });

  test('a missing --to or --target is bad usage', async () => {
    const noTo = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('bad_no_to')]);
    expect({ code: noTo.code, line: errorLines(noTo)[0] }).toEqual({ code: 2, line: expect.stringMatching(/^pitr: error: .*--to/) });
    const noTarget = await runPitr(['restore', '--repo', fx.repoDir, '--to', 'latest']);
    expect({ code: noTarget.code, line: errorLines(noTarget)[0] }).toEqual({ code: 2, line: expect.stringMatching(/^pitr: error: .*--target/) });
  });
});

describe('targets outside the recoverable window (exit 9)', () => {
  test('a time before the first backup is not found, and the message names the window', async () => {
    const result = await restoreFails(fx, 'early', beforeBackup);
    if (result.code === 0) {
      const got = await databaseFingerprints(fx, 'early');
      throw new Error(
        `${shellLine(result.args)}\nexited 0, expected 9 (the first backup, aligned at ${backup.alignedLsn}, already holds a change committed after ${beforeBackup});\n` +
          `restored ${JSON.stringify(got)}\nthe source at that time: ${JSON.stringify(expectedBefore)}`,
      );
    }
    const text = expectErrorShape(result, 9);
    expect({ message: text, problems: await windowProblems(text) }).toEqual({ message: text, problems: [] });
    await expectNothingRestored('early', false);
  });

  test('an LSN before the first backup is not found, and the message names the window', async () => {
    const result = await restoreFails(fx, 'early_lsn', 'lsn:0/10');
    const text = expectErrorShape(result, 9);
    expect({ message: text, problems: await windowProblems(text) }).toEqual({ message: text, problems: [] });
  });

  test('a time after the end of the archive is not found, and the message names the window', async () => {
    const [row] = await fx.cluster.query<{ t: string }>(
      `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC' + interval '1 day', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t`,
    );
    const result = await restoreFails(fx, 'late', (row as { t: string }).t);
    const text = expectErrorShape(result, 9);
    expect({ message: text, problems: await windowProblems(text) }).toEqual({ message: text, problems: [] });
    await expectNothingRestored('late', false);
  });

  test('an LSN after the end of the archive is not found, and the message names the window', async () => {
    const result = await restoreFails(fx, 'late_lsn', 'lsn:FF/0');
    const text = expectErrorShape(result, 9);
    expect({ message: text, problems: await windowProblems(text) }).toEqual({ message: text, problems: [] });
  });

  test('an xid or a mark the archive does not hold is not found, named in the message', async () => {
    const xid = await restoreFails(fx, 'no_xid', 'xid:4000000000');
    expect(expectErrorShape(xid, 9)).toContain('4000000000');
    const mark = await restoreFails(fx, 'no_mark', 'mark:no-such-mark');
    expect(expectErrorShape(mark, 9)).toContain('no-such-mark');
  });

  test('the last archived commit time itself is inside the window', async () => {
    const last = index[index.length - 1] as TxnSummary;
    const run = await restoreOk(fx, 'at_end', formatUnixMicros(last.commitTime));
    expect(run.report.lastApplied?.commitLsn).toBe(formatLsn(last.commitLsn));
    expect(await databaseFingerprints(fx, 'at_end')).toEqual(expectedInside);
  });
});

describe('the target database', () => {
  async function occupied(db: string): Promise<void> {
    await fx.cluster.query(`CREATE DATABASE ${db}`);
    await fx.cluster.psql('CREATE TABLE keep_me (id integer PRIMARY KEY, what text); INSERT INTO keep_me VALUES (1, $$precious$$);', db);
  }

  test('a database that is not empty is refused (exit 5), naming --force, and left alone', async () => {
    await occupied('occupied');
    const refused = await restoreFails(fx, 'occupied', inside);
    expect(await userTablesOf(fx, 'occupied')).toEqual(['public.keep_me']);
    expect(await fx.cluster.query('SELECT id, what FROM keep_me', [], 'occupied')).toEqual([{ id: 1, what: 'precious' }]);
    const text = expectErrorShape(refused, 5);
    expect(text).toContain('--force');
    expect(text).toContain('occupied');
  });

  test('with --force, a database that is not empty is restored into', async () => {
    await occupied('occupied_force');
    await restoreOk(fx, 'occupied_force', inside, ['--force']);
    const restored = await databaseFingerprints(fx, 'occupied_force');
    expect({ accounts: restored['public.accounts'] }).toEqual({ accounts: expectedInside['public.accounts'] });
  });

  test('--tables with --force never replaces a database that is not a restore: refused (exit 2), left alone', async () => {
    await occupied('occupied_tables');
    const refused = await restoreFails(fx, 'occupied_tables', inside, ['--tables', 'accounts', '--force']);
    const text = expectErrorShape(refused, 2);
    expect(text).toContain('--tables restores into a database of its own');
    expect(text).toContain('side database');
    expect(await fx.cluster.query('SELECT id, what FROM keep_me', [], 'occupied_tables')).toEqual([{ id: 1, what: 'precious' }]);
  });

  test('a database holding a restore to another point is refused without --force (exit 5); the same restore again continues it', async () => {
    const first = await restoreOk(fx, 'restored_once', inside);
    expect(first.report.resumed).toBe(false);
    const again = await restoreOk(fx, 'restored_once', inside);
    expect(again.report.resumed).toBe(true);
    expect(await databaseFingerprints(fx, 'restored_once')).toEqual(expectedInside);
    const refused = await restoreFails(fx, 'restored_once', 'latest');
    const text = expectErrorShape(refused, 5);
    expect(text).toContain('(it holds a restore to another point)');
    expect(await databaseFingerprints(fx, 'restored_once')).toEqual(expectedInside);
  });

  test('an existing empty database is used without --force', async () => {
    await fx.cluster.query('CREATE DATABASE ready_and_empty');
    await restoreOk(fx, 'ready_and_empty', inside);
    expect(await databaseFingerprints(fx, 'ready_and_empty')).toEqual(expectedInside);
  });

  test('a --tables name that matches no table of the backup or the archive is refused (exit 2) before anything, naming it and the close match', async () => {
    for (const extra of [[], ['--dry-run']]) {
      const refused = await restoreFails(fx, 'typo_tables', inside, ['--tables', 'public.acounts', ...extra]);
      const text = expectErrorShape(refused, 2);
      expect(text).toContain('public.acounts');
      expect(text).toContain('did you mean public.accounts?');
      await expectNothingRestored('typo_tables', true);
    }
    // a bare name is a table of the public schema: both spellings are fine
    const plan = await restoreFails(fx, 'typo_tables', inside, ['--tables', 'accounts', '--dry-run']);
    expect(plan.code).toBe(0);
  });

  test('the archived source itself, with its slot, is refused even with --force (exit 2) before anything, saying what to do', async () => {
    const before = await fingerprintDatabase(fx.source);
    const archiver = fx.startArchiver();
    try {
      await archiver.waitForState('streaming');
      const refused = await restoreFails(fx, 'postgres', inside, ['--force']);
      const text = expectErrorShape(refused, 2);
      expect(text).toContain('target database "postgres" is the archived source itself and has logical replication slot pitr (active)');
      expect(text).toContain('restore into a new database name');
      expect(text).toContain('pg_drop_replication_slot');
    } finally {
      expect(await archiver.stop()).toBe(0);
    }
    // without --force, and with the archiver stopped (the slot stays): the same refusal
    const again = await restoreFails(fx, 'postgres', inside);
    expect(expectErrorShape(again, 2)).toContain('has logical replication slot pitr:');
    expect(await fingerprintDatabase(fx.source)).toEqual(before);
  });

  test('an unreachable target is a connection error (exit 4)', async () => {
    const port = await freePort();
    const args = ['restore', '--repo', fx.repoDir, '--target', `postgresql://postgres@127.0.0.1:${port}/nowhere`, '--to', inside, '--log-level', 'warn'];
    const started = Date.now();
    const result = { ...(await runPitr(args, {}, 60_000)), args };
    const text = expectErrorShape(result, 4);
    expect(text).toContain(String(port));
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test('a target role that does not exist is a connection error (exit 4)', async () => {
    const args = ['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('nobody_db', 'no_such_role'), '--to', inside, '--log-level', 'warn'];
    const result = { ...(await runPitr(args, {}, 60_000)), args };
    expectErrorShape(result, 4);
  });
});
