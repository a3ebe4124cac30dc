import { utimesSync } from 'node:fs';
import { encodeCheckedJson } from '../../src/archive/checked-json';
import path from 'node:path';
import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import { leaseName, readCurrentLease } from '../../src/archive/lease-record';
import { Repository } from '../../src/archive/repository';
import type { VerifyReport } from '../../src/ops/verify';
import { readTransactions } from '../../src/archive/transaction-reader';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { caughtUp, exitWithin, segmentManifests, slotState } from '../capture/source-helpers';
import { ArchiveFixture, valueText } from '../harness/archive-fixture';
import { PgCluster } from '../harness/pg-cluster';
import { pollUntil } from '../harness/poll-until';
import { PitrProcess, runPitr } from '../harness/pitr-process';

/**
 * One repository, one writer: an archiver holds the repository's writer lease while it runs. A second
 * writer (another slot, another machine) is refused by init and by archive; a lease left by a crash is
 * taken over; a writer that lost its lease stops before storing another segment.
 */
const LEASE_REFUSED =
  /pitr: error: repository \S+ is being written by another archiver: slot "pitr" of database "postgres" \(system identifier \d+\) on host \S+ \(pid \d+\), lease renewed/;

const insert = (cluster: PgCluster, from: number, to: number): Promise<unknown> =>
  cluster.query(`INSERT INTO items SELECT g, 'row ' || g FROM generate_series(${from}, ${to}) g`);

async function itemIds(repo: Repository): Promise<number[]> {
  const ids: number[] = [];
  for await (const txn of readTransactions(repo))
    for (const m of txn.messages)
      if (m.tag === 'I' && txn.relations.get(m.relationId)?.name === 'items') ids.push(Number(valueText((m as InsertMessage).newTuple[0])));
  return ids;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('local repository', () => {
  let fx: ArchiveFixture;

  beforeEach(async () => {
    fx = await ArchiveFixture.create();
    await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
    expect((await fx.init()).code).toBe(0);
  });
  afterEach(async () => {
    await fx.destroy();
  });

  test('init and archive through a second slot are refused while the first archiver writes; it goes on, intact', async () => {
    const first = fx.startArchiver();
    await first.waitForState('streaming');
    await insert(fx.cluster, 1, 100);

    const init = await fx.init(['--slot', 'pitr2']);
    expect(init.stderr).toMatch(LEASE_REFUSED);
    expect(init.code).toBe(6);
    expect(await slotState(fx.cluster, 'pitr2')).toBeNull(); // nothing was created

    await fx.cluster.query("SELECT pg_create_logical_replication_slot('pitr2', 'pgoutput')"); // made by hand
    const second = fx.startArchiver(['--slot', 'pitr2']);
    const code = await exitWithin(second, 60_000);
    expect(second.stderr).toMatch(LEASE_REFUSED);
    expect(code).toBe(6);
    expect(await slotState(fx.cluster, 'pitr2')).toMatchObject({ active: false });

    await insert(fx.cluster, 101, 200);
    await caughtUp(fx.cluster);
    expect(await first.stop()).toBe(0);
    expect(await itemIds(fx.repository())).toEqual(range(1, 200));
    const verify = await runPitr(['verify', '--repo', fx.repoDir]);
    expect(verify.code).toBe(0);
    await fx.cluster.query("SELECT pg_drop_replication_slot('pitr2')");
  });

  test('kill -9: the restarted archiver takes the lease over at once (its holder is gone from this machine) and loses nothing', async () => {
    const first = fx.startArchiver();
    await first.waitForState('streaming');
    await insert(fx.cluster, 1, 100);
    await caughtUp(fx.cluster);
    await first.stop('SIGKILL');
    await insert(fx.cluster, 101, 200);

    const restarted = fx.startArchiver();
    const taken = await restarted.waitFor((l) => l.event === 'lease_taken_over');
    expect(taken).toMatchObject({ reason: 'holder-gone', token: 2 });
    await restarted.waitForState('streaming');
    await caughtUp(fx.cluster);
    expect(await restarted.stop()).toBe(0);
    expect(await itemIds(fx.repository())).toEqual(range(1, 200));
    expect((await readCurrentLease(fx.repository().storage))?.record.holder).toBeNull(); // released by the clean stop
  });

  test('a lease left by a crash on another machine: refused while fresh, taken over once expired, or at once with --takeover', async () => {
    const first = fx.startArchiver();
    await first.waitForState('streaming');
    await first.stop('SIGKILL');
    // as if that archiver had run on another machine: its process cannot be looked for from here
    const storage = fx.repository().storage;
    const current = await readCurrentLease(storage);
    const elsewhere = {
      ...current?.record,
      holder: { ...current?.record.holder, host: 'db-archiver-2', slot: 'pitr-old' },
      generation: (current?.record.generation ?? 0) + 1,
    };
    const name = leaseName(elsewhere.generation);
    expect(await storage.create(name, encodeCheckedJson(elsewhere))).toBe('created');

    const refused = fx.startArchiver();
    expect(await exitWithin(refused, 60_000)).toBe(6);
    expect(refused.stderr).toMatch(/is being written by another archiver: slot "pitr-old" .* on host db-archiver-2/);
    expect(refused.stderr).toMatch(/hint: .*--takeover/);

    const old = new Date(Date.now() - 120_000);
    utimesSync(path.join(fx.repoDir, ...name.split('/')), old, old); // not renewed for longer than its 30 s ttl
    const afterExpiry = fx.startArchiver();
    expect(await afterExpiry.waitFor((l) => l.event === 'lease_taken_over')).toMatchObject({ reason: 'expired' });
    await afterExpiry.waitForState('streaming');
    await afterExpiry.stop('SIGKILL');

    // once more a fresh lease of that machine, now taken over at once
    const again = await readCurrentLease(storage);
    const fresh = { ...again?.record, holder: { ...again?.record.holder, host: 'db-archiver-2' }, generation: (again?.record.generation ?? 0) + 1 };
    expect(await storage.create(leaseName(fresh.generation), encodeCheckedJson(fresh))).toBe('created');
    const takeover = fx.startArchiver(['--takeover']);
    expect(await takeover.waitFor((l) => l.event === 'lease_taken_over')).toMatchObject({ reason: 'takeover' });
    await takeover.waitForState('streaming');
    await insert(fx.cluster, 1, 10);
    await caughtUp(fx.cluster);
    expect(await takeover.stop()).toBe(0);
  });

  test('a writer whose lease is taken over stops before storing another segment; nothing stored after the takeover is acknowledged', async () => {
    const first = fx.startArchiver(['--segment-age', '50ms']);
    await first.waitForState('streaming');
    await insert(fx.cluster, 1, 50);
    await first.waitFor((l) => l.event === 'segment_stored');

    await fx.cluster.query("SELECT pg_create_logical_replication_slot('pitr2', 'pgoutput')");
    const second = fx.startArchiver(['--slot', 'pitr2', '--takeover']);
    await second.waitFor((l) => l.event === 'lease_taken_over');
    await second.waitForState('streaming');
    for (let i = 0; first.child.exitCode === null && i < 200; i++) await insert(fx.cluster, 1000 + i * 10, 1009 + i * 10); // the first archiver seals and tries to store
    expect(await exitWithin(first, 60_000)).toBe(6);
    expect(first.stderr).toMatch(/pitr: error: lost the lease of repository \S+ to slot "pitr2" .*: this archiver stopped before storing another segment/);

    // the first one's stored segments all come before the second one's: the tokens never go back in the chain
    await insert(fx.cluster, 5001, 5010);
    await pollUntil(
      async () => segmentManifests(fx.repoDir).filter((m) => m.fencingToken === 2).length,
      (n) => n > 0,
      'a segment of the second writer',
    );
    expect(await second.stop()).toBe(0);
    const tokens = segmentManifests(fx.repoDir).map((m) => m.fencingToken);
    expect(tokens).toEqual([...tokens].sort());
    // one chain: the second writer continued after the first one's last segment, nothing interleaved (a data
    // object whose upload had begun before the takeover may stay behind without its manifest: not part of the archive)
    const verify = JSON.parse((await runPitr(['verify', '--repo', fx.repoDir, '--json'])).stdout) as VerifyReport;
    expect(verify.problems.filter((p) => p.status !== 'unreferenced')).toEqual([]);
    // the first slot was acknowledged no further than what the first writer stored: the second writer's first
    // transaction (received by the first one too, never stored by it) is still ahead of the slot
    const firstOfSecond = segmentManifests(fx.repoDir).find((m) => m.fencingToken === 2);
    const [{ ok }] = (await fx.cluster.query<{ ok: boolean }>(
      "SELECT confirmed_flush_lsn <= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'",
      [firstOfSecond?.firstCommitLsn],
    )) as [{ ok: boolean }];
    expect(ok).toBe(true);
    await fx.cluster.query("SELECT pg_drop_replication_slot('pitr2')");
  });
});

describe('GCS repository', () => {
  let cluster: PgCluster;
  let gcs: FakeGcsServer;
  const REPO = 'gs://pitr-lease/shop';

  beforeAll(async () => {
    cluster = await PgCluster.start();
    gcs = await FakeGcsServer.start();
    await cluster.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
    expect((await runPitr(['init', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url])).code).toBe(0);
  });
  afterAll(async () => {
    await cluster.destroy();
    await gcs.close();
  });

  const archive = (extra: string[] = []): PitrProcess =>
    new PitrProcess([
      'archive',
      '--source',
      cluster.url(),
      '--repo',
      REPO,
      '--gcs-endpoint',
      gcs.url,
      '--segment-age',
      '200ms',
      '--log-level',
      'debug',
      ...extra,
    ]);

  test('init and archive through a second slot are refused while the first archiver writes; it goes on, intact', async () => {
    const first = archive();
    await first.waitForState('streaming');
    await insert(cluster, 1, 100);

    const init = await runPitr(['init', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--slot', 'pitr2']);
    expect(init.stderr).toMatch(LEASE_REFUSED);
    expect(init.code).toBe(6);

    await cluster.query("SELECT pg_create_logical_replication_slot('pitr2', 'pgoutput')");
    const second = archive(['--slot', 'pitr2']);
    expect(await exitWithin(second, 60_000)).toBe(6);
    expect(second.stderr).toMatch(LEASE_REFUSED);

    await insert(cluster, 101, 200);
    const repo = new Repository(new GcsStorage({ bucket: 'pitr-lease', prefix: 'shop', apiEndpoint: gcs.url }));
    await pollUntil(
      () => itemIds(repo),
      (ids) => ids.length === 200,
      'every row archived',
    );
    expect(await first.stop()).toBe(0);
    expect(await itemIds(repo)).toEqual(range(1, 200));
    expect(gcs.objectNames('pitr-lease', 'shop/lease/').length).toBeGreaterThan(0);
    await cluster.query("SELECT pg_drop_replication_slot('pitr2')");
  });

  test('kill -9: the restarted archiver takes the stale lease over and loses nothing', async () => {
    const first = archive();
    await first.waitForState('streaming');
    await insert(cluster, 301, 400);
    await caughtUp(cluster);
    await first.stop('SIGKILL');
    await insert(cluster, 401, 500);
    const restarted = archive();
    expect(await restarted.waitFor((l) => l.event === 'lease_taken_over')).toMatchObject({ reason: 'holder-gone' });
    await restarted.waitForState('streaming');
    await caughtUp(cluster);
    expect(await restarted.stop()).toBe(0);
    const repo = new Repository(new GcsStorage({ bucket: 'pitr-lease', prefix: 'shop', apiEndpoint: gcs.url }));
    expect((await itemIds(repo)).filter((id) => id > 300)).toEqual(range(301, 500));
  });
});
