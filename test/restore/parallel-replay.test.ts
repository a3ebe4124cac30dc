/**
 * Replay over several connections, with batches gathered across transactions: a workload of key
 * churn (keys changed, deleted and inserted again, rows updated many times in one transaction),
 * a secondary UNIQUE whose values rotate between rows (no reordering allowed there), a composite key,
 * REPLICA IDENTITY FULL on a table with a primary key (matched by the key, a TOASTed value unchanged as the key moves),
 * unchanged TOAST values, a table without a key, and a table slow to apply (its connection falls
 * behind the others, which commit their share of later segments first), and in every round a TRUNCATE
 * among other changes and a schema change between transactions (so most segments mix transactions
 * that run serial with ones that run in parallel). Restores with --jobs 1 and --jobs 3, to the end
 * and to a point in the middle, and one killed with SIGKILL mid-replay and run again, must all equal
 * the source at that point.
 */
import { Client } from 'pg';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { pollUntil } from '../harness/poll-until';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { databaseFingerprints, describeDifference, restoreArgs, restoreOk, shellLine } from './restore-helpers';

const ROUNDS = 12;
let fx: ArchiveFixture;
let middle: { time: string; fingerprints: Fingerprints };
let end: Fingerprints;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One round: 40 transactions over every table. */
async function round(client: Client, r: number): Promise<void> {
  await client.query(`DO $$
    DECLARE base int := ${r} * 1000;
    BEGIN
      FOR t IN 0..39 LOOP
        -- key churn: new rows, the previous transaction's rows updated twice, some keys moved, some deleted
        INSERT INTO acct SELECT base + t * 20 + g, g * 1.5, 'owner ' || g FROM generate_series(1, 20) g;
        UPDATE acct SET balance = balance + 1 WHERE id BETWEEN base + (t - 1) * 20 + 1 AND base + (t - 1) * 20 + 10;
        UPDATE acct SET balance = balance * 2, owner = owner || '!' WHERE id BETWEEN base + (t - 1) * 20 + 1 AND base + (t - 1) * 20 + 5;
        UPDATE acct SET id = id + 500000 WHERE id BETWEEN base + (t - 1) * 20 + 11 AND base + (t - 1) * 20 + 13;
        DELETE FROM acct WHERE id BETWEEN base + t * 20 + 15 AND base + t * 20 + 20;
        -- a deleted key comes back in a later transaction, with other values
        INSERT INTO acct SELECT base + (t - 1) * 20 + g, -g, 'again' FROM generate_series(15, 17) g WHERE t > 0;
        -- rotate the unique codes of three rows through a spare value
        UPDATE slots SET code = 'spare' WHERE id = 1 + (t % 10);
        UPDATE slots SET code = 'code-' || (1 + (t % 10)) || '-' || ${r} || '-' || t WHERE id = 2 + (t % 10);
        UPDATE slots SET code = 'code-' || (2 + (t % 10)) || '-' || ${r} || '-' || t WHERE id = 1 + (t % 10);
        INSERT INTO pairs VALUES (t, 'r' || ${r}, ${r}) ON CONFLICT (a, b) DO UPDATE SET v = pairs.v + 1;
        DELETE FROM pairs WHERE a = (t + 7) % 40 AND b = 'r' || (${r} - 1);
        UPDATE docs SET hits = hits + 1 WHERE id = 1 + (t % 5);          -- body is TOASTed and unchanged
        UPDATE docs SET body = repeat(md5((t + ${r})::text), 400) WHERE id = 6 + (t % 5) AND t % 7 = 0;
        INSERT INTO slow SELECT base + t * 20 + g, md5(g::text) FROM generate_series(1, 20) g;
        INSERT INTO notes VALUES ('n' || (t % 3), t), ('n' || (t % 3), t);   -- duplicates, no key
        DELETE FROM notes WHERE ctid = (SELECT ctid FROM notes WHERE tag = 'n' || ((t + 1) % 3) LIMIT 1);
        -- REPLICA IDENTITY FULL with a primary key: matched by the key, in batches; a hot row, a TOASTed
        -- body left unchanged while the key moves, deletes and inserts
        UPDATE fullpk SET hits = hits + 1 WHERE id = 1;
        UPDATE fullpk SET id = id + 100000, hits = hits + 1 WHERE id = ${r} * 100 + t;
        UPDATE fullpk SET body = body || t WHERE id = 2 AND t % 9 = 0;
        DELETE FROM fullpk WHERE id = ${r} * 100 + t + 100000 AND t % 4 = 0;
        INSERT INTO fullpk VALUES (${r} * 100 + t, t, 'short ' || t);
        -- a TRUNCATE among a transaction's other changes, and a schema change of its own between two
        -- transactions: the segments holding them run serial only there
        IF t = 30 THEN TRUNCATE notes; INSERT INTO notes VALUES ('truncated', ${r}); END IF;
        COMMIT;
        IF t = 19 THEN EXECUTE format('ALTER TABLE slow ADD COLUMN r%s int DEFAULT %s', ${r}, ${r}); COMMIT; END IF;
      END LOOP;
    END $$`);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE TABLE acct (id bigint PRIMARY KEY, balance numeric NOT NULL, owner text);
    CREATE TABLE slots (id int PRIMARY KEY, code text NOT NULL UNIQUE);
    INSERT INTO slots SELECT g, 'code-' || g FROM generate_series(1, 12) g;
    CREATE TABLE pairs (a int, b text, v int, PRIMARY KEY (a, b));
    CREATE TABLE docs (id int PRIMARY KEY, hits int NOT NULL, body text);
    INSERT INTO docs SELECT g, 0, repeat(md5(g::text), 400) FROM generate_series(1, 10) g;
    -- costly to apply (its index hashes 100 kB per row), so its connection lags behind the others
    CREATE TABLE slow (id int PRIMARY KEY, v text);
    CREATE INDEX slow_costly ON slow ((md5(repeat(v, 3000))));
    CREATE TABLE notes (tag text, n int);
    ALTER TABLE notes REPLICA IDENTITY FULL;
    CREATE TABLE fullpk (id int PRIMARY KEY, hits int NOT NULL, body text);
    ALTER TABLE fullpk REPLICA IDENTITY FULL;
    INSERT INTO fullpk SELECT g, 0, repeat(md5(g::text), 400) FROM generate_series(1, 2) g;
    INSERT INTO fullpk SELECT g, 0, repeat(md5(g::text), 400) FROM generate_series(100, 1399) g;`);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  const archiver = fx.startArchiver();
  try {
    await archiver.waitForState('streaming');
    const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn']);
    if (backup.code !== 0) throw new Error(`pitr backup failed:\n${backup.stderr}`);
    const client = new Client({ connectionString: fx.source });
    await client.connect();
    try {
      for (let r = 1; r <= ROUNDS; r++) {
        await round(client, r);
        if (r === ROUNDS / 2) {
          const [{ t }] = (await client.query<{ t: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t`))
            .rows as [{ t: string }];
          middle = { time: t, fingerprints: await fingerprintDatabase(fx.source) };
        }
        await sleep(250); // past --segment-age: many segments
      }
      end = await fingerprintDatabase(fx.source);
    } finally {
      await client.end();
    }
    await fx.waitCaughtUp();
  } finally {
    expect(await archiver.stop()).toBe(0);
  }
}, 120_000);

afterAll(async () => fx?.destroy());

async function expectRestored(db: string, to: string, jobs: number, expected: Fingerprints): Promise<void> {
  const run = await restoreOk(fx, db, to, ['--jobs', String(jobs)]);
  const actual = await databaseFingerprints(fx, db);
  if (JSON.stringify(actual) !== JSON.stringify(expected))
    throw new Error(`${shellLine(run.args)} restored the wrong data:\n${describeDifference(expected, actual, undefined, undefined)}`);
}

test.each([1, 3])('--to latest with --jobs %i equals the source', async (jobs) => {
  await expectRestored(`latest_${jobs}`, 'latest', jobs, end);
});

test('the log says how long each connection spent applying, and on which tables', async () => {
  const args = [...restoreArgs(fx, 'logged_3', 'latest', ['--jobs', '3']), '--log-level', 'info'];
  const run = await runPitr(args, {}, 100_000);
  expect(run.code).toBe(0);
  const lines = run.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map(
      (l) =>
        JSON.parse(l) as {
          event?: string;
          replaySeconds?: number;
          connections?: { connection: number; busySeconds: number; tables: { table: string; seconds: number }[] }[];
        },
    );
  const logged = lines.find((l) => l.event === 'replay_connections');
  expect(logged?.connections?.map((c) => c.connection)).toEqual([1, 2, 3]);
  const tables = (logged?.connections ?? []).flatMap((c) => c.tables.map((t) => t.table));
  // the costliest table is named (the others may fall outside a connection's five)
  expect(tables).toContain('public.slow');
  // a table with a bigint key is split among the connections, each applying its part of the keys
  expect((logged?.connections ?? []).filter((c) => c.tables.some((t) => t.table === 'public.acct')).length).toBeGreaterThan(1);
  for (const c of logged?.connections ?? []) expect(c.busySeconds).toBeLessThanOrEqual((logged?.replaySeconds ?? 0) + 0.001);
});

test('a point in the middle with --jobs 3 equals the source then', async () => {
  await expectRestored('middle_3', middle.time, 3, middle.fingerprints);
});

/** What each connection records as it commits its share: per table, and per part of a table split among them. */
const PROGRESS = '(SELECT last_commit_lsn FROM pitr.restore_tables UNION ALL SELECT last_commit_lsn FROM pitr.restore_parts)';

/** Starts the restore and kills it once some connection committed its share of a segment the restore has not recorded as whole. */
async function killWhileTablesAhead(db: string, args: string[]): Promise<number> {
  const first = new PitrProcess(args);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (first.child.exitCode !== null) throw new Error(`${shellLine(args)} finished before it could be killed: make the workload bigger`);
    if (Date.now() > deadline) throw new Error(`no replay progress in 60 s:\n${first.stderr.slice(-2000)}`);
    const progress = await fx.cluster
      .query<{ ahead: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${PROGRESS} t WHERE s.last_commit_lsn IS NULL OR t.last_commit_lsn > s.last_commit_lsn) AS ahead
           FROM pitr.restore_state s WHERE s.phase = 'replay'`,
        [],
        db,
      )
      .catch(() => []);
    if (progress[0]?.ahead) break;
    await sleep(1);
  }
  first.child.kill('SIGKILL');
  await first.wait();
  const [state] = await fx.cluster.query<{ phase: string; ahead: string }>(
    `SELECT phase, (SELECT count(*) FROM ${PROGRESS} t WHERE s.last_commit_lsn IS NULL OR t.last_commit_lsn > s.last_commit_lsn)::text AS ahead
       FROM pitr.restore_state s`,
    [],
    db,
  );
  expect(state?.phase).toBe('replay');
  return Number(state?.ahead);
}

test('--jobs 3 killed with SIGKILL mid-replay, then run again with --jobs 2, equals the source', async () => {
  const db = 'killed_3';
  const args = [...restoreArgs(fx, db, 'latest', ['--jobs', '3']), '--json', '--log-level', 'warn'];
  // the kill must land while some tables are ahead of the restore's recorded position (the resume
  // then has to skip what they already hold); the window is short, so try a few times
  let ahead = 0;
  for (let attempt = 0; attempt < 5 && ahead === 0; attempt++) {
    if (attempt > 0) await fx.cluster.query(`DROP DATABASE ${db} WITH (FORCE)`);
    ahead = await killWhileTablesAhead(db, args);
  }
  expect(ahead).toBeGreaterThan(0);
  process.stderr.write(`parallel replay: killed with ${ahead} tables or parts committed past the restore's recorded position\n`);
  // fewer connections: the split tables keep their three parts, two of them now on one connection
  const again = args.map((a, i) => (args[i - 1] === '--jobs' ? '2' : a));
  const second = await runPitr(again, {}, 100_000);
  if (second.code !== 0) throw new Error(`${shellLine(again)} (re-run after SIGKILL) exited ${second.code}:\n${second.stderr.slice(-3000)}`);
  const actual = await databaseFingerprints(fx, db);
  if (JSON.stringify(actual) !== JSON.stringify(end))
    throw new Error(`${shellLine(again)} (re-run after SIGKILL) restored the wrong data:\n${describeDifference(end, actual, undefined, undefined)}`);
}, 110_000);

test('SIGINT mid-replay stops the restore with exit 130 and one line saying so; the same command then finishes it exactly', async () => {
  const db = 'interrupted_3';
  const args = [...restoreArgs(fx, db, 'latest', ['--jobs', '3']), '--log-level', 'warn'];
  const first = new PitrProcess(args);
  await pollUntil(
    () =>
      fx.cluster
        .query<{ n: string }>('SELECT transactions::text AS n FROM pitr.restore_state', [], db)
        .then((rows) => Number(rows[0]?.n ?? 0))
        .catch(() => 0),
    (n) => n > 0 || first.child.exitCode !== null,
    'replay to start',
  );
  if (first.child.exitCode !== null) throw new Error(`${shellLine(args)} finished before it could be interrupted: make the workload bigger`);
  expect(await first.stop('SIGINT')).toBe(130);
  expect(first.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual([
    'pitr: error: restore interrupted during replay: what was committed stays in the target',
    'hint: run the same command again to continue where it stopped',
  ]);
  const second = await runPitr(args, {}, 100_000);
  if (second.code !== 0) throw new Error(`${shellLine(args)} (re-run after SIGINT) exited ${second.code}:\n${second.stderr.slice(-3000)}`);
  expect(await databaseFingerprints(fx, db)).toEqual(end);
}, 110_000);
