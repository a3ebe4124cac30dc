/**
 * Interrupted and failing restores: a restore killed with SIGKILL mid-replay is finished by running the
 * same command again, with exactly the right result; a corrupt segment stops a restore with an
 * integrity error naming it, and nothing from that segment or after it reaches the target.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { parseLsn } from '../../src/pg/lsn';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { databaseFingerprints, describeDifference, errorLines, restoreArgs, shellLine } from './restore-helpers';
import { objectFile } from '../harness/repo-files';

/** Batches of small transactions, each batch sealed into its own segment(s): a replay of many segments. */
const BATCHES = 24;
const PER_BATCH = 1000;
const SEED_ROWS = 100;

let fx: ArchiveFixture;
let backup: { id: string; alignedLsn: string };
let targetTime = '';
let expected: Fingerprints;
/** per archived transaction after the backup: its segment and the ledger ids it inserted */
const txns: { segment: string; commitLsn: bigint; ids: number[] }[] = [];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function batch(client: Client, from: number, count: number): Promise<void> {
  await client.query(`DO $$
    BEGIN
      FOR i IN ${from}..${from + count - 1} LOOP
        INSERT INTO ledger VALUES (i, md5(i::text), 0);
        INSERT INTO events VALUES ('ins', i, clock_timestamp());
        IF i % 10 = 0 THEN UPDATE ledger SET n = n + 1, v = v || '+' WHERE id = i - 5; END IF;
        IF i % 50 = 0 THEN DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE kind = 'seed' LIMIT 1); END IF;
        COMMIT;
      END LOOP;
    END $$`);
}

beforeAll(async () => {
  const started = Date.now();
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`CREATE TABLE ledger (id bigint PRIMARY KEY, v text NOT NULL, n integer NOT NULL);
    INSERT INTO ledger SELECT g, md5(g::text), 0 FROM generate_series(1, ${SEED_ROWS}) g;
    CREATE TABLE events (kind text, ref bigint, at timestamptz);
    ALTER TABLE events REPLICA IDENTITY FULL;
    INSERT INTO events SELECT 'seed', g % 3, '2026-01-01 00:00:00+00' FROM generate_series(1, 60) g;`);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  const archiver = fx.startArchiver();
  try {
    await archiver.waitForState('streaming');
    const b = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
    if (b.code !== 0) throw new Error(`pitr backup failed:\n${b.stderr}`);
    backup = JSON.parse(b.stdout) as { id: string; alignedLsn: string };
    const client = new Client({ connectionString: fx.source });
    await client.connect();
    try {
      for (let i = 0; i < BATCHES; i++) {
        await batch(client, SEED_ROWS + 1 + i * PER_BATCH, PER_BATCH);
        await sleep(250); // longer than --segment-age: the next batch starts a new segment
      }
      targetTime = (
        (await client.query<{ t: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t`)).rows[0] as {
          t: string;
        }
      ).t;
      expected = await fingerprintDatabase(fx.source);
      // after the target: must not be restored
      await batch(client, SEED_ROWS + 1 + BATCHES * PER_BATCH, 50);
    } finally {
      await client.end();
    }
    await sleep(300);
    await fx.waitCaughtUp();
  } finally {
    expect(await archiver.stop()).toBe(0);
  }
  const aligned = parseLsn(backup.alignedLsn);
  for (const txn of await fx.transactions()) {
    if (txn.commitLsn < aligned) continue;
    const ids = txn.messages.flatMap((m) => (m.tag === 'I' && txn.relations.get(m.relationId)?.name === 'ledger' ? [Number(valueText(m.newTuple[0]))] : []));
    txns.push({ segment: txn.segment, commitLsn: txn.commitLsn, ids });
  }
  process.stderr.write(
    `resume: ${txns.length} transactions in ${new Set(txns.map((t) => t.segment)).size} segments after the backup, archived in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
}, 120_000);

afterAll(async () => fx?.destroy());

async function ledgerCount(db: string): Promise<number | undefined> {
  const client = new Client({ connectionString: fx.cluster.url(db) });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM ledger');
    return Number(rows[0]?.n);
  } catch {
    return undefined; // database or table not there yet
  } finally {
    await client.end().catch(() => undefined);
  }
}

const dbOid = async (db: string): Promise<string | undefined> =>
  (await fx.cluster.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_database WHERE datname = $1', [db]))[0]?.oid;

test('a restore killed with SIGKILL mid-replay is finished by running the same command again', async () => {
  const db = 'resumed';
  const args = [...restoreArgs(fx, db, targetTime), '--json', '--log-level', 'warn'];
  const finalRows = (expected['public.ledger'] as { rows: number }).rows;

  // 1. kill it once a few segments are applied, well before the end
  const first = new PitrProcess(args);
  let atKill: number | undefined;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (first.child.exitCode !== null)
      throw new Error(
        `${shellLine(args)}\nfinished (exit ${first.child.exitCode}) before it could be killed mid-replay: make the workload bigger\n${first.stderr.slice(-2000)}`,
      );
    if (Date.now() > deadline) throw new Error(`no replay progress in 60 s:\n${first.stderr.slice(-2000)}`);
    const n = await ledgerCount(db);
    if (n !== undefined && n >= SEED_ROWS + 3 * PER_BATCH) {
      first.child.kill('SIGKILL');
      await first.wait();
      atKill = n;
      break;
    }
    await sleep(5);
  }
  const rowsAfterKill = (await ledgerCount(db)) as number;
  expect(rowsAfterKill).toBeGreaterThan(SEED_ROWS);
  expect(rowsAfterKill).toBeLessThan(finalRows); // really mid-replay
  const oidBefore = await dbOid(db);
  expect((await fx.cluster.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pitr'", [], db)).length).toBe(1);

  // 2. the same command again: completes, exactly right
  const second = await runPitr(args, {}, 100_000);
  if (second.code !== 0)
    throw new Error(`${shellLine(args)} (re-run after SIGKILL at ${atKill} ledger rows)\nexited ${second.code}, expected 0:\n${second.stderr.slice(-3000)}`);
  const actual = await databaseFingerprints(fx, db);
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(
      `${shellLine(args)} (re-run after SIGKILL at ${atKill} ledger rows) restored the wrong data:\n${describeDifference(expected, actual, undefined, undefined)}`,
    );
  }
  const report = JSON.parse(second.stdout) as { lastApplied: { commitLsn: string } | null };
  const lastBeforeTarget = txns.filter((t) => t.ids.length > 0 && t.ids[0]! < SEED_ROWS + 1 + BATCHES * PER_BATCH).at(-1);
  expect(parseLsn(report.lastApplied?.commitLsn ?? '0/0') >= (lastBeforeTarget?.commitLsn ?? 0n)).toBe(true);

  // 3. it continued in the same database rather than starting over
  expect(await dbOid(db)).toBe(oidBefore);
  // rows inserted into ledger over both runs: continuing inserts about finalRows in all (plus the one
  // segment rolled back by the kill); starting over inserts rowsAfterKill + finalRows or more
  const inserted = await settledInsertCount(db);
  if (inserted >= rowsAfterKill + finalRows)
    throw new Error(
      `the re-run started over: ${inserted} rows inserted into ledger over both runs (${rowsAfterKill} were there after the kill, ${finalRows} at the end)`,
    );
  process.stderr.write(`resume: killed at ${rowsAfterKill} of ${finalRows} ledger rows; ${inserted} inserted over both runs\n`);
}, 110_000);

/** pg_stat_user_tables.n_tup_ins of ledger, once the restore's sessions have flushed their statistics. */
async function settledInsertCount(db: string): Promise<number> {
  let previous = -1;
  for (let i = 0; i < 20; i++) {
    const [row] = await fx.cluster.query<{ n: string }>("SELECT n_tup_ins::text AS n FROM pg_stat_user_tables WHERE relname = 'ledger'", [], db);
    const n = Number(row?.n ?? -1);
    if (n === previous) return n;
    previous = n;
    await sleep(250);
  }
  return previous;
}

/** The segment holding the transaction at `fraction` of the replay, and the first ledger id it inserts. */
function segmentAt(fraction: number): { segment: string; firstId: number; ids: number[] } {
  const withIds = txns.filter((t) => t.ids.length > 0);
  const segment = (withIds[Math.floor(withIds.length * fraction)] as (typeof withIds)[number]).segment;
  const ids = txns.filter((t) => t.segment === segment).flatMap((t) => t.ids);
  return { segment, firstId: Math.min(...ids), ids };
}

/**
 * Replaces a segment's stored bytes with `corrupt(original)` for the duration of `fn`, restores into a
 * fresh database, and checks: exit 7, one error line naming the segment (and a hint), nothing applied
 * from the segment on, and what was applied is a prefix of the history (ledger ids 1..max, no gaps).
 */
async function expectStopsAtCorruptSegment(db: string, segment: string, firstId: number, corrupt: (original: Buffer) => Buffer): Promise<void> {
  const file = objectFile(fx.repoDir, `${segment}.lz4`);
  const original = readFileSync(file);
  const mode = statSync(file).mode;
  chmodSync(file, 0o644);
  writeFileSync(file, corrupt(original));
  try {
    const args = [...restoreArgs(fx, db, targetTime), '--log-level', 'warn'];
    const result = await runPitr(args, {}, 100_000);
    const lines = errorLines(result);
    const [row] = await fx.cluster
      .query<{ max: string | null; n: string }>('SELECT max(id)::text AS max, count(*)::text AS n FROM ledger', [], db)
      .catch(() => [undefined]);
    const max = Number(row?.max ?? 0);
    const what = `${shellLine(args)} with segment ${segment} corrupted (its first ledger id is ${firstId})`;
    // all at once, so one failure shows every aspect: exit code, the error lines, what reached the target
    expect({
      what,
      code: result.code,
      stderr: lines,
      appliedFromCorruptSegmentOn: max >= firstId,
      ledgerRowsAreIds1ToMax: Number(row?.n ?? 0) === max,
    }).toEqual({
      what,
      code: 7,
      stderr: [expect.stringMatching(new RegExp(`^pitr: error: .*${path.posix.basename(segment)}`)), expect.stringMatching(/^hint: /)].slice(
        0,
        lines.length === 1 ? 1 : 2,
      ),
      appliedFromCorruptSegmentOn: false,
      ledgerRowsAreIds1ToMax: true,
    });
    process.stderr.write(`corrupt: ${db}: segment ${segment} (first ledger id ${firstId}); target stopped at ledger id ${max}\n`);
  } finally {
    writeFileSync(file, original);
    chmodSync(file, mode & 0o777);
  }
}

const lz4 = (args: string[], input: Buffer): Buffer => execFileSync('lz4', [...args, '-q'], { input, maxBuffer: 256 * 1024 * 1024 });

/** The segment's decompressed content with `edit` applied at the first occurrence of `find`, compressed again. */
function editContent(original: Buffer, find: Buffer, edit: (content: Buffer, at: number) => void): Buffer {
  const content = lz4(['-dc'], original);
  const at = content.indexOf(find);
  if (at < 0) throw new Error(`the test could not find ${JSON.stringify(find.toString('latin1'))} in the segment`);
  edit(content, at);
  return lz4(['-c'], content);
}

/** pgoutput text column: 't', int32 length, bytes. */
const textColumn = (text: string): Buffer => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(Buffer.byteLength(text));
  return Buffer.concat([Buffer.from('t'), len, Buffer.from(text)]);
};

describe('a corrupt segment stops the restore (exit 7) with an error naming it, and nothing from it on is applied', () => {
  test('a byte flipped in the stored .lz4 file', async () => {
    const { segment, firstId } = segmentAt(0.5);
    await expectStopsAtCorruptSegment('corrupt_flip', segment, firstId, (original) => {
      const bytes = Buffer.from(original);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] as number) ^ 0xff;
      return bytes;
    });
  });

  test('content altered so that a value is not valid UTF-8 (decodes badly before the checksum is known)', async () => {
    const { segment, firstId, ids } = segmentAt(0.3);
    const id = ids[Math.floor(ids.length / 2)] as number;
    const md5 = createHash('md5').update(String(id)).digest('hex');
    await expectStopsAtCorruptSegment('corrupt_utf8', segment, firstId, (original) =>
      editContent(original, Buffer.from(md5), (content, at) => {
        content[at] = 0xff;
      }),
    );
  });

  test('content altered so that a value no longer fits its column (fails to apply before the checksum is known)', async () => {
    const { segment, firstId, ids } = segmentAt(0.15);
    const id = ids[Math.floor(ids.length / 2)] as number;
    await expectStopsAtCorruptSegment('corrupt_value', segment, firstId, (original) =>
      editContent(original, textColumn(String(id)), (content, at) => {
        content[at + 5] = 'x'.charCodeAt(0); // first digit of the id: "x2093" is no bigint
      }),
    );
  });
});
