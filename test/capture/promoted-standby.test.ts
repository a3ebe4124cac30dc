import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import type { SegmentManifest } from '../../src/archive/segment-manifest';
import { readTransactions } from '../../src/archive/transaction-reader';
import type { ListReport } from '../../src/ops/list';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { PgCluster } from '../harness/pg-cluster';
import { pollUntil } from '../harness/poll-until';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { caughtUp, exitWithin, segmentManifests } from './source-helpers';

/**
 * A standby (pg_basebackup, streaming) promoted at the primary's address: the same system identifier on
 * a new timeline. PostgreSQL 15 keeps no logical slot on a standby, so the slot is normally gone; a
 * failover tool may have copied it. The archiver recognises the promotion on reconnecting and continues
 * when its slot is there and the stream continuous, stops naming the promotion when the slot is missing
 * (init then records the gap), and refuses a standby that branched off before the archive's end.
 */
let fx: ArchiveFixture;
let standby: PgCluster | undefined;
let archiver: PitrProcess | undefined;

beforeEach(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
  expect((await fx.init()).code).toBe(0);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await insert(1, 100);
  await caughtUp(fx.cluster);
});

afterEach(async () => {
  archiver?.child.kill('SIGKILL');
  await standby?.destroy();
  standby = undefined;
  await fx.destroy();
});

const insert = (from: number, to: number): Promise<unknown> =>
  fx.cluster.query(`INSERT INTO items SELECT g, 'row ' || g FROM generate_series(${from}, ${to}) g`);

const currentLsn = async (cluster: PgCluster): Promise<string> =>
  ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0] as { lsn: string }).lsn;

/** Waits until the standby has replayed everything the primary has written. */
async function standbyCaughtUp(primary: PgCluster, replica: PgCluster): Promise<void> {
  const target = await currentLsn(primary);
  await pollUntil(
    () => replica.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [target]),
    (rows) => rows[0]?.ok === true,
    `the standby to replay ${target}`,
  );
}

/**
 * Stops the primary, promotes the standby (optionally with the primary's slot copied into it) and moves
 * it to the primary's address. A standby stopped earlier is started once the primary is gone, so it
 * receives nothing more.
 */
async function failover(options: { copySlot: boolean; startStandby?: boolean }): Promise<void> {
  const replica = standby as PgCluster;
  const port = fx.cluster.port;
  await fx.cluster.stopServer(); // fast: a connected standby receives everything first
  await archiver?.waitForState('backoff');
  if (options.startStandby) await replica.startServer();
  if (options.copySlot) {
    await replica.stopServer();
    await replica.copySlotFrom(fx.cluster, 'pitr');
    await replica.startServer();
  }
  await replica.promote();
  await replica.moveToPort(port);
}

/** Ids inserted into items, in archive order, reading each chain of segments on its own (a recorded gap starts a new one). */
async function archivedIds(): Promise<number[]> {
  const chains: SegmentManifest[][] = [];
  for (const manifest of segmentManifests(fx.repoDir)) {
    if (manifest.previous === null || chains.length === 0) chains.push([]);
    chains[chains.length - 1]?.push(manifest);
  }
  const ids: number[] = [];
  for (const chain of chains)
    for await (const txn of readTransactions(fx.repository(), chain))
      for (const m of txn.messages)
        if (m.tag === 'I' && txn.relations.get(m.relationId)?.name === 'items') ids.push(Number(valueText((m as InsertMessage).newTuple[0])));
  return ids;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('promoted with the slot copied (as failover tools do) and the stream continuous: the archiver goes on, one chain, no gap', async () => {
  standby = await PgCluster.standbyOf(fx.cluster);
  const afterBackup = await currentLsn(fx.cluster);
  await insert(101, 200);
  await fx.cluster.query('CHECKPOINT');
  await insert(201, 210);
  await caughtUp(fx.cluster);
  // the slot's restart point must lie in WAL the standby has (it received WAL from its base backup on)
  await pollUntil(
    () => fx.cluster.query<{ ok: boolean }>("SELECT restart_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'", [afterBackup]),
    (rows) => rows[0]?.ok === true,
    'the slot to move past the base backup',
  );
  await standbyCaughtUp(fx.cluster, standby);
  await failover({ copySlot: true });

  const switched = await (archiver as PitrProcess).waitFor((l) => l.event === 'timeline_switch', 60_000);
  expect(switched).toMatchObject({ from: 1, to: 2 });
  await (archiver as PitrProcess).waitForState('streaming', 60_000);
  await insert(211, 300); // on the promoted server, at the same address
  await caughtUp(fx.cluster);
  expect(await (archiver as PitrProcess).stop()).toBe(0);

  expect(await archivedIds()).toEqual(range(1, 300));
  const manifests = segmentManifests(fx.repoDir);
  expect(manifests[0]?.timeline).toBe(1);
  expect(manifests.at(-1)?.timeline).toBe(2);
  const verify = await runPitr(['verify', '--repo', fx.repoDir]);
  expect(verify.stdout).toMatch(/is intact/);
  expect(verify.code).toBe(0);
});

test('promoted without the slot (PostgreSQL 15 keeps none on a standby): exit 3 naming the promotion; init re-creates the slot and records the gap', async () => {
  standby = await PgCluster.standbyOf(fx.cluster);
  await insert(101, 150);
  await standbyCaughtUp(fx.cluster, standby);
  await failover({ copySlot: false });

  const code = await exitWithin(archiver as PitrProcess, 60_000);
  expect((archiver as PitrProcess).stderr).toMatch(
    /pitr: error: replication slot "pitr" does not exist on postgresql:\/\/\S+, which was promoted: it is on timeline 2 since [0-9A-F]+\/[0-9A-F]+, the archive was on timeline 1/,
  );
  expect((archiver as PitrProcess).stderr).toMatch(/hint: .*pitr init/);
  expect(code).toBe(3);

  const init = await fx.init();
  expect(init.code).toBe(0);
  expect(init.stdout).toMatch(/warning: the archive has a gap/);
  archiver = fx.startArchiver();
  await (archiver as PitrProcess).waitForState('streaming');
  await insert(151, 200);
  await caughtUp(fx.cluster);
  expect(await (archiver as PitrProcess).stop()).toBe(0);

  const list = JSON.parse((await runPitr(['list', '--repo', fx.repoDir, '--json'])).stdout) as ListReport;
  expect(list.gaps).toEqual([expect.objectContaining({ cause: 'slot-recreated', slot: 'pitr' })]);
  const ids = await archivedIds();
  expect(ids.filter((id) => id <= 100)).toEqual(range(1, 100));
  expect(ids.filter((id) => id > 150)).toEqual(range(151, 200));
  expect(segmentManifests(fx.repoDir).at(-1)?.timeline).toBe(2);
});

test('a standby that branched off before the end of the archive: exit 5, nothing of the new timeline written; init refuses it too', async () => {
  standby = await PgCluster.standbyOf(fx.cluster);
  await standbyCaughtUp(fx.cluster, standby);
  await standby.stopServer(); // it receives nothing more: what follows exists only in the archive
  await insert(101, 5000);
  await caughtUp(fx.cluster);
  await failover({ copySlot: false, startStandby: true });

  const code = await exitWithin(archiver as PitrProcess, 60_000);
  expect((archiver as PitrProcess).stderr).toMatch(
    /pitr: error: source postgresql:\/\/\S+ branched off the archive's history: it is on timeline 2 since [0-9A-F]+\/[0-9A-F]+, but the archive holds transactions of timeline 1 up to [0-9A-F]+\/[0-9A-F]+/,
  );
  expect(code).toBe(5);
  expect(segmentManifests(fx.repoDir).every((m) => m.timeline === 1)).toBe(true);
  const init = await fx.init();
  expect(init.stderr).toMatch(/branched off the archive's history/);
  expect(init.code).toBe(5);
});
