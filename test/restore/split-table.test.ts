/**
 * A table whose key is a fixed-width type is split among the replay connections by a hash of its key.
 * An update that moves a row's key to another part becomes a delete in the old part and an insert in
 * the new one; a value it left unchanged (stored out of line, not sent by pgoutput) is read back from
 * the old row as it is deleted, and kept with that connection's commit, so that a replay killed after
 * the old part committed and before the new part did still has it. These restores (with --jobs 1, 2
 * and 3, and killed right after a connection committed such a delete, then run again with --jobs 2 or
 * 1) must equal the source.
 */
import { Client } from 'pg';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { runPitr } from '../harness/pitr-process';
import { databaseFingerprints, describeDifference, restoreArgs, restoreOk, shellLine } from './restore-helpers';

let fx: ArchiveFixture;
let expected: Fingerprints;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    -- costly to apply (its index hashes 1 MB per row): the connection holding it commits last; a text
    -- key, so it is not split
    CREATE TABLE slow (id text PRIMARY KEY, v text);
    CREATE INDEX slow_costly ON slow ((md5(repeat(v, 30000))));
    CREATE TABLE docs (id bigint PRIMARY KEY, hits int NOT NULL, body text);
    ALTER TABLE docs ALTER body SET STORAGE EXTERNAL;
    INSERT INTO docs SELECT g, 0, (SELECT string_agg(md5(g::text || n::text), '') FROM generate_series(1, 200) n) FROM generate_series(1, 80) g;
    CREATE TABLE plain (id int PRIMARY KEY, v int);
    INSERT INTO plain SELECT g, g FROM generate_series(1, 100) g;`);
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
      await client.query(`DO $$
        BEGIN
          FOR t IN 0..9 LOOP
            -- first in the stream, so the first connection gets it (with the first part of docs)
            INSERT INTO slow SELECT (t * 10 + g)::text, md5(g::text) FROM generate_series(1, 10) g;
            -- keys moved (about half of them to another part), the out-of-line body unchanged
            UPDATE docs SET id = id + 1001, hits = hits + 1 WHERE id BETWEEN 4 * t + 1 AND 4 * t + 4;
            -- keys moved with the body changed, and rows updated in place
            UPDATE docs SET id = id + 2000, body = 'short ' || t WHERE id = 2 * t + 42;
            UPDATE docs SET hits = hits + 10 WHERE id BETWEEN 61 AND 80;
            -- keys moved with every value sent
            UPDATE plain SET id = id + 1000, v = -v WHERE id = t * 3 + 1;
            UPDATE plain SET id = id - 800 WHERE id = t * 3 + 1001;
            DELETE FROM plain WHERE id = 90 + t;
            INSERT INTO plain VALUES (90 + t, t * 100);
            COMMIT;
          END LOOP;
        END $$`);
    } finally {
      await client.end();
    }
    expected = await fingerprintDatabase(fx.source);
    await fx.waitCaughtUp();
  } finally {
    expect(await archiver.stop()).toBe(0);
  }
}, 120_000);

afterAll(async () => fx?.destroy());

async function expectEqual(db: string, args: string[]): Promise<void> {
  const actual = await databaseFingerprints(fx, db);
  if (JSON.stringify(actual) !== JSON.stringify(expected))
    throw new Error(`${shellLine(args)} restored the wrong data:\n${describeDifference(expected, actual, undefined, undefined)}`);
}

test.each([1, 2, 3])('--jobs %i equals the source', async (jobs) => {
  const db = `split_${jobs}`;
  const run = await restoreOk(fx, db, 'latest', ['--jobs', String(jobs)]);
  await expectEqual(db, run.args);
});

test.each([2, 1])('killed right after a connection committed the delete of a moved row, then run again with --jobs %i, equals the source', async (jobs) => {
  const db = `split_killed_${jobs}`;
  const args = [...restoreArgs(fx, db, 'latest', ['--jobs', '2']), '--json', '--log-level', 'warn'];
  // the old row's values must be kept past the restore's recorded position, another part (the new
  // part of a key moved to the connection with the costly table) not yet committed; that connection
  // is almost always the later one to commit, so try a few times
  let state: { moves: string; behind: boolean } | undefined;
  for (let attempt = 0; attempt < 5 && !state?.behind; attempt++) {
    if (attempt > 0) await fx.cluster.query(`DROP DATABASE ${db} WITH (FORCE)`);
    const first = await runPitr(args, { PITR_TEST_CRASH_AT: 'replay:moved-row-committed' }, 100_000);
    expect(first.code).toBeNull(); // SIGKILL
    [state] = await fx.cluster.query<{ moves: string; behind: boolean }>(
      `SELECT (SELECT count(*) FROM pitr.restore_moves m WHERE s.last_commit_lsn IS NULL OR m.commit_lsn > s.last_commit_lsn)::text AS moves,
              EXISTS (SELECT 1 FROM pitr.restore_moves m CROSS JOIN generate_series(0, 1) AS part(n) WHERE NOT EXISTS (
                SELECT 1 FROM pitr.restore_parts p WHERE p.relation_id = m.relation_id AND p.part = part.n AND p.last_commit_lsn >= m.commit_lsn)) AS behind
         FROM pitr.restore_state s`,
      [],
      db,
    );
  }
  expect(Number(state?.moves)).toBeGreaterThan(0);
  expect(state?.behind).toBe(true);
  // with one connection, the parts an interrupted run committed are still judged part by part
  const again = args.map((a, i) => (args[i - 1] === '--jobs' ? String(jobs) : a));
  const second = await runPitr(again, {}, 100_000);
  if (second.code !== 0) throw new Error(`${shellLine(again)} (re-run) exited ${second.code}:\n${second.stderr.slice(-3000)}`);
  await expectEqual(db, again);
  const [left] = await fx.cluster.query<{ n: string }>('SELECT count(*)::text AS n FROM pitr.restore_moves', [], db);
  expect(left?.n).toBe('0');
});
