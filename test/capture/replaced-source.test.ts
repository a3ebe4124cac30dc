import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ArchiveFixture } from '../harness/archive-fixture';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { caughtUp, exitWithin, segmentManifests, slotState } from './source-helpers';

/**
 * The server at the archiver's address is no longer the database its repository belongs to. The
 * archiver checks who it reached on every connection and stops before streaming anything: nothing of
 * the other server is written, nothing is acknowledged on it, and its slot is left free.
 */
let fx: ArchiveFixture;
const others: PgCluster[] = [];
const dirs: string[] = [];

beforeEach(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
  expect((await fx.init()).code).toBe(0);
});

afterEach(async () => {
  for (const cluster of others.splice(0)) await cluster.destroy();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await fx.destroy();
});

const insert = (cluster: PgCluster, from: number, to: number): Promise<unknown> =>
  cluster.query(`INSERT INTO items SELECT g, 'row ' || g FROM generate_series(${from}, ${to}) g`);

/** Now, as segment manifests write commit times (the sources run on this machine, on its clock). */
const microsNow = (): string => new Date().toISOString().replace('Z', '000Z');

/** Segments holding a commit made after `time`: none may come from the server that replaced the source. */
const onlyBefore = (time: string): string[] =>
  segmentManifests(fx.repoDir)
    .filter((m) => m.lastCommitTime > time)
    .map((m) => m.name);

async function archiving(): Promise<PitrProcess> {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await insert(fx.cluster, 1, 300);
  await caughtUp(fx.cluster);
  return archiver;
}

test('another cluster at the same address, with a slot of the same name: exit 5, nothing of it written or acknowledged, its slot left free', async () => {
  const archiver = await archiving();
  // a rebuilt server: another cluster, prepared with "pitr init" for its own repository before it takes the address
  const other = await PgCluster.start();
  others.push(other);
  await other.query('CREATE TABLE items (id int PRIMARY KEY, note text)');
  const otherRepo = mkdtempSync(path.join(tmpdir(), 'pitr-repo-'));
  dirs.push(otherRepo);
  expect((await runPitr(['init', '--source', other.url(), '--repo', otherRepo])).code).toBe(0);
  await insert(other, 1, 10); // its LSNs are lower than those the archive holds
  const otherSlot = await slotState(other);

  await fx.cluster.stopServer();
  const stoppedAt = microsNow(); // nothing of the source commits after this
  await archiver.waitForState('backoff');
  await other.moveToPort(fx.cluster.port);

  const code = await exitWithin(archiver, 60_000);
  expect(archiver.stderr).toMatch(
    /pitr: error: source postgresql:\/\/\S+ is not the database repository \S+ belongs to: it is system identifier \d+, database "postgres"/,
  );
  expect(code).toBe(5);
  expect(archiver.lines.some((l) => l.event === 'source_mismatch')).toBe(true);
  // nothing of the other cluster in the repository, nothing acknowledged on it
  expect(onlyBefore(stoppedAt)).toEqual([]);
  expect(await slotState(other)).toEqual({ ...otherSlot, active: false });
  // the other cluster's own archiver can use its slot at once
  const own = new PitrProcess(['archive', '--source', other.url(), '--repo', otherRepo, '--segment-age', '200ms', '--log-level', 'debug']);
  await own.waitForState('streaming');
  expect(await own.stop()).toBe(0);
});

/**
 * An archiver streaming rows 1 to 10, a copy of the source taken then (the archiver reconnects after the
 * short stop), and rows 11 to 5000 archived after it: the copy is older than the archive.
 */
async function archiveThenCopy(): Promise<{ archiver: PitrProcess; older: PgCluster }> {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await insert(fx.cluster, 1, 10);
  await caughtUp(fx.cluster);
  const older = await fx.cluster.copy();
  others.push(older);
  await archiver.waitForState('streaming');
  await insert(fx.cluster, 11, 5000);
  await caughtUp(fx.cluster);
  return { archiver, older };
}

test('the same cluster restored from an older copy (same system identifier, lower LSN): exit 5 instead of dropping its transactions as duplicates', async () => {
  const { archiver, older } = await archiveThenCopy();
  const port = fx.cluster.port;

  await fx.cluster.stopServer();
  const stoppedAt = microsNow();
  await archiver.waitForState('backoff');
  await older.moveToPort(port);
  const olderSlot = await slotState(older);

  const code = await exitWithin(archiver, 60_000);
  expect(archiver.stderr).toMatch(
    /pitr: error: source postgresql:\/\/\S+ is behind the archive: its WAL ends at [0-9A-F]+\/[0-9A-F]+, and the archive is complete up to [0-9A-F]+\/[0-9A-F]+/,
  );
  expect(code).toBe(5);
  expect(onlyBefore(stoppedAt)).toEqual([]);
  expect(await slotState(older)).toEqual({ ...olderSlot, active: false });
  // init refuses it too, before creating anything
  const init = await fx.init();
  expect(init.stderr).toMatch(/is behind the archive/);
  expect(init.code).toBe(5);
});

test("the same cluster restored from an older copy and written past the archive's end before the archiver reconnects: exit 5, nothing of the other history stored or acknowledged", async () => {
  const { archiver: first, older } = await archiveThenCopy();
  expect(await first.stop()).toBe(0); // everything stored and acknowledged
  const archiveEnd = segmentManifests(fx.repoDir).at(-1)?.endLsn as string;
  const port = fx.cluster.port;

  await fx.cluster.stopServer();
  await older.moveToPort(port);
  const stoppedAt = microsNow(); // nothing of the source commits after this
  // the older copy takes other transactions, until its WAL is past the archive's end
  await older.query("INSERT INTO items SELECT g, 'other ' || g FROM generate_series(11, 20000) g");
  await older.query('CHECKPOINT');
  const [past] = await older.query<{ ok: boolean }>('SELECT pg_current_wal_flush_lsn() > $1::pg_lsn AS ok', [archiveEnd]);
  expect(past?.ok).toBe(true);
  const olderSlot = await slotState(older);

  const archiver = fx.startArchiver();
  const code = await exitWithin(archiver, 60_000);
  expect(archiver.stderr).toMatch(/pitr: error: source postgresql:\/\/\S+ has another history than the archive after [0-9A-F]+\/[0-9A-F]+: /);
  expect(code).toBe(5);
  expect(archiver.lines.some((l) => l.event === 'source_mismatch')).toBe(true);
  // nothing of the other history in the repository, nothing acknowledged on it
  expect(onlyBefore(stoppedAt)).toEqual([]);
  expect(segmentManifests(fx.repoDir).at(-1)?.endLsn).toBe(archiveEnd);
  expect(await slotState(older)).toEqual({ ...olderSlot, active: false });
});
