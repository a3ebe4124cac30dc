import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Repository } from '../../src/archive/repository';
import { HistoryCheck, historyCheck } from '../../src/capture/history-check';
import { formatLsn } from '../../src/pg/lsn';
import { unixMicrosToPgMicros } from '../../src/pg/pg-time';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { HEARTBEAT_LSN_STEP, writeHeartbeatSegments } from '../harness/heartbeat-segments';
import { StreamAssembler } from '../../src/capture/stream-assembler';
import { isPitrError } from '../../src/errors';
import { parseLsn } from '../../src/pg/lsn';

const source = 'postgresql://db1/shop';
const commit = (lsn: string, xid: number, time = 1_000_000n) => ({ commitLsn: parseLsn(lsn), xid, commitTime: time });
const archived = [commit('0/1000100', 700), commit('0/1000200', 701), commit('0/1000300', 702)];
const checking = () => new HistoryCheck(parseLsn('0/1000000'), archived, source);

/** A pgoutput Begin: tag, final LSN, commit time (PostgreSQL microseconds), xid. */
function begin(c: { commitLsn: bigint; xid: number; commitTime: bigint }): Buffer {
  const message = Buffer.alloc(21);
  message.write('B', 0, 'latin1');
  message.writeBigUInt64BE(c.commitLsn, 1);
  message.writeBigInt64BE(c.commitTime, 9);
  message.writeUInt32BE(c.xid, 17);
  return message;
}

function refusal(run: () => void): string {
  try {
    run();
  } catch (error) {
    expect(isPitrError(error, 'Repository')).toBe(true);
    return (error as Error).message;
  }
  throw new Error('not refused');
}

test('the same transactions again, in order: accepted, and nothing is pending after the last', () => {
  const check = checking();
  for (const c of archived) {
    expect(check.pending).toBe(true);
    check.begin(c.commitLsn, c.xid, c.commitTime);
  }
  expect(check.pending).toBe(false);
  check.begin(parseLsn('0/1000400'), 703, 5n); // new transactions after it are not checked
  check.decodedTo(parseLsn('0/2000000'));
});

test('another transaction at an archived commit LSN (other xid or commit time): refused, naming both', () => {
  expect(refusal(() => checking().begin(parseLsn('0/1000100'), 900, 1_000_000n))).toBe(
    `source ${source} has another history than the archive after 0/1000000: it sent transaction 900 committed at 0/1000100 (2000-01-01T00:00:01.000000Z), where the archive holds transaction 700 committed at 0/1000100 (2000-01-01T00:00:01.000000Z)`,
  );
  expect(refusal(() => checking().begin(parseLsn('0/1000100'), 700, 2_000_000n))).toMatch(/where the archive holds transaction 700/);
});

test('an archived transaction missing (a later commit first), or one the archive does not hold: refused', () => {
  expect(refusal(() => checking().begin(parseLsn('0/1000200'), 701, 1_000_000n))).toMatch(
    /: the archive's transaction 700 committed at 0\/1000100 \(\S+\) is not in its history: it sent transaction 701 committed at 0\/1000200/,
  );
  expect(refusal(() => checking().begin(parseLsn('0/1000080'), 699, 1_000_000n))).toMatch(
    /: it sent transaction 699 committed at 0\/1000080 \(\S+\), which the archive does not hold \(the archive's next is transaction 700/,
  );
});

test('a keepalive past the next archived commit without it sent: refused; one before it is not', () => {
  const check = checking();
  check.decodedTo(parseLsn('0/1000100'));
  expect(refusal(() => check.decodedTo(parseLsn('0/1000101')))).toMatch(/it has decoded its WAL up to 0\/1000101 without sending it/);
});

test('the stream assembler checks every Begin while the check is pending, the duplicates it drops and a new one alike', () => {
  const assembler = new StreamAssembler('/nonexistent', parseLsn('0/1000300'));
  assembler.history = checking();
  assembler.handle(begin(archived[0] as (typeof archived)[0]));
  expect(assembler.betweenTransactions).toBe(false);
  expect(refusal(() => assembler.handle(begin(commit('0/1000400', 703))))).toMatch(/the archive's transaction 701 .* is not in its history/);
  expect(assembler.openRawBytes).toBe(0); // nothing of either was written
});

describe('what the check reads from the archive', () => {
  const FIRST = 0x1000000n;
  const FIRST_TIME = 1_790_000_000_000_000n;
  let dir: string;
  let repo: Repository;
  const where = { source, slot: 'pitr' };
  /** The heartbeat segments' commits: segment i commits at FIRST + i * step, xid 10000000 + i, 100 µs apart. */
  const nth = (i: number) => ({
    commitLsn: FIRST + HEARTBEAT_LSN_STEP * BigInt(i),
    xid: 10_000_000 + i,
    commitTime: unixMicrosToPgMicros(FIRST_TIME + 100n * BigInt(i)),
  });
  const end = FIRST + HEARTBEAT_LSN_STEP * 9n + 0x30n; // of the tenth and last segment

  /** A repository of ten heartbeat segments, one transaction each, chained. */
  async function heartbeatRepo(name: string): Promise<{ repo: Repository; names: string[] }> {
    const manifests = await writeHeartbeatSegments({
      previous: null,
      identity: { systemIdentifier: '7310000000000000001', database: 'shop' },
      firstLsn: FIRST,
      firstTime: FIRST_TIME,
      count: 10,
      spoolDir: dir,
      store: async (object, data) => {
        const file = path.join(dir, name, object);
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, data);
      },
    });
    return { repo: new Repository(new LocalStorage(path.join(dir, name))), names: manifests.map((m) => m.name) };
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pitr-history-'));
    repo = (await heartbeatRepo('repo')).repo;
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a slot at or past the archive's end, or none: no check", async () => {
    expect(await historyCheck(repo, end, end, where)).toBeNull();
    expect(await historyCheck(repo, end + 8n, end, where)).toBeNull();
    expect(await historyCheck(repo, null, end, where)).toBeNull();
  });

  test('a slot behind: the archived commits at or after its position, in order, and nothing before it', async () => {
    const slot = nth(6).commitLsn - 0x10n; // inside segment 5, after its commit
    const check = (await historyCheck(repo, slot, end, where)) as HistoryCheck;
    expect(check.slotLsn).toBe(slot);
    expect(refusal(() => (check as HistoryCheck).begin(nth(5).commitLsn, nth(5).xid, nth(5).commitTime))).toMatch(/which the archive does not hold/);
    const again = (await historyCheck(repo, slot, end, where)) as HistoryCheck;
    for (const i of [6, 7, 8, 9]) {
      expect(again.pending).toBe(true);
      again.begin(nth(i).commitLsn, nth(i).xid, nth(i).commitTime);
    }
    expect(again.pending).toBe(false);
  });

  test('segments past the stored end (uploads of this run not acknowledged in order yet): not compared', async () => {
    const check = (await historyCheck(repo, nth(6).commitLsn - 0x10n, nth(7).commitLsn + 0x30n, where)) as HistoryCheck;
    for (const i of [6, 7]) check.begin(nth(i).commitLsn, nth(i).xid, nth(i).commitTime);
    expect(check.pending).toBe(false);
  });

  test('more segments after the slot than the bound: refused before reading them', async () => {
    await expect(historyCheck(repo, FIRST, end, where, 5)).rejects.toThrow(
      `source ${source} is further behind the archive than a crash leaves: its replication slot "pitr" confirmed ${formatLsn(FIRST)}, and the archive holds more than 5 segments after that, up to ${formatLsn(end)}`,
    );
    expect(await historyCheck(repo, FIRST, end, where, 10)).not.toBeNull();
  });

  test("a segment missing between the slot and the archive's end (an upload cut off by a crash): refused as such, not as another history", async () => {
    const slot = nth(6).commitLsn - 0x10n;
    for (const [gone, named] of [
      [8, 9],
      [6, 7],
    ] as const) {
      const holed = await heartbeatRepo(`holed-${gone}`);
      const base = path.join(dir, `holed-${gone}`, holed.names[gone] as string);
      rmSync(`${base}.json`);
      rmSync(`${base}.lz4`);
      const error = await historyCheck(holed.repo, slot, end, where).catch((e: unknown) => e);
      expect(isPitrError(error, 'Integrity')).toBe(true);
      expect((error as Error).message).toBe(
        `segment ${holed.names[gone]} is missing from the archive: ${holed.names[named]} names it as its previous, and replication slot "pitr" on ${source} confirmed only ${formatLsn(slot)}, before it`,
      );
    }
  });
});
