import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { WriteLoad } from '../harness/write-load';

let fx: ArchiveFixture;

beforeEach(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
});

afterEach(async () => {
  await fx.destroy();
});

/** Every ledger id in the archive, in archive order, and the commit LSNs seen. */
async function archivedLedger(): Promise<{ ids: number[]; commitLsns: bigint[] }> {
  const ids: number[] = [];
  const commitLsns: bigint[] = [];
  for (const txn of await fx.transactions()) {
    commitLsns.push(txn.commitLsn);
    for (const m of txn.messages)
      if (m.tag === 'I' && txn.relations.get(m.relationId)?.name === 'ledger') ids.push(Number(valueText((m as InsertMessage).newTuple[0])));
  }
  return { ids, commitLsns };
}

async function sourceLedger(): Promise<number[]> {
  return (await fx.cluster.query<{ id: string }>('SELECT id FROM ledger ORDER BY id')).map((r) => Number(r.id));
}

function expectExactlyOnce(archived: { ids: number[]; commitLsns: bigint[] }, expected: number[]): void {
  expect(new Set(archived.commitLsns).size).toBe(archived.commitLsns.length);
  expect(archived.ids.length).toBe(new Set(archived.ids).size);
  expect([...archived.ids].sort((a, b) => a - b)).toEqual(expected);
}

test('kill -9 of the archiver at random points under load loses and doubles nothing', async () => {
  const load = new WriteLoad(fx.source).start();
  for (let round = 0; round < 4; round++) {
    const archiver = fx.startArchiver();
    await archiver.waitForState('streaming');
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 1200));
    await archiver.stop('SIGKILL');
  }
  await load.stop();
  const last = fx.startArchiver();
  await last.waitForState('streaming');
  await fx.waitCaughtUp();
  expect(await last.stop()).toBe(0);
  expect(load.committed.length).toBeGreaterThan(100);
  expectExactlyOnce(
    await archivedLedger(),
    [...load.committed].sort((a, b) => a - b),
  );
});

test('a source restart under load: the archiver reconnects and nothing is lost', async () => {
  const load = new WriteLoad(fx.source).start();
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await new Promise((r) => setTimeout(r, 700));
  await fx.cluster.restart('immediate');
  await archiver.waitForState('backoff');
  await archiver.waitForState('streaming', 60_000);
  await new Promise((r) => setTimeout(r, 500));
  await load.stop();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  // after an immediate restart the source's table is the truth: every row it holds, exactly once
  expectExactlyOnce(await archivedLedger(), await sourceLedger());
});

test('SIGTERM seals, stores and acknowledges everything received', async () => {
  const archiver = fx.startArchiver(['--segment-age', '1h', '--segment-size', '1GB']);
  await archiver.waitForState('streaming');
  await fx.cluster.query("INSERT INTO ledger (id, payload) SELECT g, 'x' FROM generate_series(1, 1000) g");
  await new Promise((r) => setTimeout(r, 500));
  expect(await archiver.stop()).toBe(0);
  expect((await archivedLedger()).ids.length).toBe(1000);
  const [slot] = await fx.cluster.query<{ confirmed: string; current: string }>(
    "SELECT confirmed_flush_lsn::text AS confirmed, pg_current_wal_lsn()::text AS current FROM pg_replication_slots WHERE slot_name = 'pitr'",
  );
  const latest = await fx.repository().latestSegment();
  expect(slot?.confirmed).toBe(latest?.endLsn);
});

test('kill -9 after a segment is stored, before the slot is acknowledged: the next run compares what the server sends again with the archive and resumes without loss', async () => {
  const insert = (from: number, to: number): Promise<unknown> =>
    fx.cluster.query(`INSERT INTO ledger (id, payload) SELECT g, 'x' FROM generate_series(${from}, ${to}) g`);
  const first = fx.startArchiver();
  await first.waitForState('streaming');
  await insert(1, 1000);
  await fx.waitCaughtUp();
  expect(await first.stop()).toBe(0);

  await insert(1001, 2000);
  const crashing = fx.startArchiver([], { PITR_TEST_CRASH_AT: 'archive:segment-stored' });
  expect(await crashing.wait()).toBeNull(); // killed by the crash point
  const [slot] = await fx.cluster.query<{ behind: boolean }>(
    "SELECT confirmed_flush_lsn < $1::pg_lsn AS behind FROM pg_replication_slots WHERE slot_name = 'pitr'",
    [(await fx.repository().latestSegment())?.endLsn],
  );
  expect(slot?.behind).toBe(true);

  await insert(2001, 3000);
  const resumed = fx.startArchiver();
  await resumed.waitForState('streaming');
  await fx.waitCaughtUp();
  expect(await resumed.stop()).toBe(0);
  expect(resumed.lines.some((l) => l.event === 'history_check')).toBe(true);
  expectExactlyOnce(
    await archivedLedger(),
    Array.from({ length: 3000 }, (_, i) => i + 1),
  );
});
