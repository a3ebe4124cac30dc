import { formatLsn } from '../../src/pg/lsn';
import type { DrillReport } from '../../src/ops/drill';
import type { ListReport } from '../../src/ops/list';
import type { LogEntry } from '../../src/ops/log-transactions';
import type { PruneReport } from '../../src/ops/prune';
import type { StatusReport } from '../../src/ops/status';
import type { VerifyReport } from '../../src/ops/verify';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { PgCluster } from '../harness/pg-cluster';
import { caughtUp } from '../capture/source-helpers';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';

/** The operating commands against a gs:// repository, through the real GCS client and the fake server. */
const BUCKET = 'pitr-ops';
const REPO = `gs://${BUCKET}/shop`;
let cluster: PgCluster;
let gcs: FakeGcsServer;
let archiver: PitrProcess | undefined;
let backupId: string;
let deleteXid: number;

function pitr(args: string[]): Promise<RunResult> {
  return runPitr([...args, '--repo', REPO, '--gcs-endpoint', gcs.url, '--log-level', 'warn']);
}
const objects = (prefix: string): string[] => gcs.objectNames(BUCKET, `shop/${prefix}`);
const segmentManifests = (): string[] => objects('segments/').filter((n) => n.endsWith('.json'));

/** Until the slot has confirmed everything committed so far (caughtUp: the insert position, as the cluster commits asynchronously). */
function waitCaughtUp(): Promise<void> {
  return caughtUp(cluster);
}

beforeAll(async () => {
  cluster = await PgCluster.start();
  gcs = await FakeGcsServer.start({ pageSize: 5 }); // small pages: listings go through paging
  await cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, name text);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;`);
  expect((await pitr(['init', '--source', cluster.url()])).code).toBe(0);
  archiver = new PitrProcess(['archive', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--segment-age', '200ms', '--heartbeat', '1s']);
  await archiver.waitForState('streaming');
  // at least two segments before the backup, so prune has one to remove besides the chain's anchor
  for (const [from, to] of [
    [51, 65],
    [66, 80],
  ]) {
    const seen = archiver.lines.length;
    await cluster.psql(`INSERT INTO items SELECT g, 'early ' || g FROM generate_series(${from}, ${to}) g;`);
    await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  const backup = await pitr(['backup', '--source', cluster.url(), '--json']);
  expect(backup.code).toBe(0);
  backupId = (JSON.parse(backup.stdout) as { id: string }).id;
  await cluster.psql("INSERT INTO items SELECT g, 'late ' || g FROM generate_series(81, 100) g;");
  expect((await pitr(['mark', 'before-delete', '--source', cluster.url()])).code).toBe(0);
  const [{ xid }] = (await cluster.withClient(async (c) => {
    await c.query('BEGIN');
    await c.query('DELETE FROM items WHERE id <= 10');
    const rows = (await c.query<{ xid: string }>('SELECT txid_current()::text AS xid')).rows;
    await c.query('COMMIT');
    return rows;
  })) as [{ xid: string }];
  deleteXid = Number(xid);
  await waitCaughtUp(); // the slot moves past the delete only once its segment is stored
}, 60_000);
afterAll(async () => {
  if (archiver && archiver.child.exitCode === null) await archiver.stop();
  await cluster.destroy();
  await gcs.close();
});

test('status: healthy against gs://, with the backup and the window', async () => {
  const result = await pitr(['status', '--source', cluster.url(), '--json']);
  const report = JSON.parse(result.stdout) as StatusReport;
  expect(report.reasons).toEqual([]);
  expect(result.code).toBe(0);
  expect(report).toMatchObject({ health: 'healthy', archiver: 'running', backup: { id: backupId } });
  expect(report.window.earliest?.lsn).toBe(formatLsn(BigInt(`0x${backupId.slice(0, 16)}`))); // the backup's aligned LSN
});

test('list and log: backups, segments, the mark, and the delete', async () => {
  // the archiver stores a heartbeat segment every second meanwhile: list sees what was there when it ran
  const before = segmentManifests().length;
  const listed = await pitr(['list', '--json']);
  expect(listed.code).toBe(0);
  const report = JSON.parse(listed.stdout) as ListReport;
  expect(report.backups.map((b) => b.id)).toEqual([backupId]);
  expect(report.segments.count).toBeGreaterThanOrEqual(before);
  expect(report.segments.count).toBeLessThanOrEqual(segmentManifests().length);
  expect(report.gaps).toEqual([]);
  expect(report.marks.map((m) => m.name)).toEqual(['before-delete']);

  const logged = await pitr(['log', '--op', 'delete', '--table', 'items', '--json']);
  expect(logged.code).toBe(0);
  const { entries } = JSON.parse(logged.stdout) as { entries: LogEntry[] };
  expect(entries.map((e) => e.xid)).toEqual([deleteXid]);
  expect(entries[0]?.tables).toEqual([{ table: 'public.items', insert: 0, update: 0, delete: 10, truncate: 0 }]);
});

test('drill: restores from gs:// into a scratch database and checks the row counts', async () => {
  expect(await archiver?.stop()).toBe(0);
  archiver = undefined;
  const result = await pitr(['drill', '--target', cluster.url('gcs_drill'), '--json']);
  expect(result.stderr).not.toMatch(/pitr: error/);
  expect(result.code).toBe(0);
  const report = JSON.parse(result.stdout) as DrillReport;
  expect(report).toMatchObject({ ok: true, backup: { id: backupId }, kept: false });
  expect(report.tables.find((t) => t.name === 'public.items')).toMatchObject({ expectedRows: 90, rows: 90, ok: true });
});

test('verify: clean, then a corrupt segment in the bucket is reported (shallow and deep), exit 7', async () => {
  const clean = await pitr(['verify', '--json']);
  expect((JSON.parse(clean.stdout) as VerifyReport).problems).toEqual([]);
  expect(clean.code).toBe(0);

  const manifests = segmentManifests();
  const victim = (manifests[manifests.length - 1] as string).replace(/\.json$/, '.lz4');
  gcs.corrupt(BUCKET, victim); // bit rot: the stored digests no longer match the bytes
  try {
    for (const extra of [[], ['--deep']]) {
      const result = await pitr(['verify', '--json', ...extra]);
      expect(result.code).toBe(7);
      const report = JSON.parse(result.stdout) as VerifyReport;
      expect(report.problems).toEqual([expect.objectContaining({ object: victim.slice('shop/'.length), status: 'corrupt' })]);
    }
  } finally {
    gcs.corrupt(BUCKET, victim); // the same byte flipped back
  }
  expect((await pitr(['verify'])).code).toBe(0);
});

test('prune: removes the segments before the only backup from the bucket, and what is left verifies', async () => {
  const before = segmentManifests();
  const aligned = BigInt(`0x${backupId.slice(0, 16)}`);
  const endOf = (name: string): bigint => BigInt(`0x${name.slice(-'.json'.length - 16, -'.json'.length)}`);
  expect(before.filter((n) => endOf(n) <= aligned).length).toBeGreaterThan(1);

  const result = await pitr(['prune', '--retention', '1ms', '--json']);
  expect(result.code).toBe(0);
  const report = JSON.parse(result.stdout) as PruneReport;
  expect(report.keptFrom?.backup).toBe(backupId);
  expect(report.removed.backups).toEqual([]);
  expect(report.removed.segments).toBe(before.filter((n) => endOf(n) <= aligned).length - 1);
  const after = segmentManifests();
  expect(after.filter((n) => endOf(n) <= aligned)).toHaveLength(1); // the chain's anchor
  expect(objects('segments/').filter((n) => n.endsWith('.lz4'))).toHaveLength(after.length);
  expect(objects(`backups/${backupId}/`)).toContain(`shop/backups/${backupId}/manifest.json`);
  const verified = await pitr(['verify', '--json']);
  expect((JSON.parse(verified.stdout) as VerifyReport).problems).toEqual([]);
  expect(verified.code).toBe(0);
});

test('a slot invalidated while a segment cannot be stored: the archiver stops with exit 3 naming the gap, abandoning the upload', async () => {
  archiver = new PitrProcess(['archive', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--segment-age', '200ms', '--heartbeat', '1h']);
  await archiver.waitForState('streaming');
  gcs.failNext(1_000_000, { status: 503 }, on.uploads); // nothing can be stored: the slot is not acknowledged
  try {
    await cluster.query("INSERT INTO items VALUES (5000, 'never stored')");
    await archiver.waitFor((l) => l.event === 'upload_retry');
    await cluster.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    await cluster.query('SELECT pg_reload_conf()');
    // WAL without row changes (no more segments): checkpoints and segment switches until the slot is lost
    let walStatus: string | undefined;
    for (let round = 0; round < 20 && walStatus !== 'lost'; round++) {
      await cluster.query('CHECKPOINT');
      await cluster.query('SELECT pg_switch_wal()');
      await cluster.query('CHECKPOINT');
      walStatus = (await cluster.query<{ wal_status: string }>("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pitr'"))[0]?.wal_status;
    }
    expect(walStatus).toBe('lost');
    // the upload still retrying is abandoned (it was never acknowledged), so the process ends
    expect(await archiver.wait()).toBe(3);
    expect(archiver.stderr).toMatch(/^pitr: error: replication slot "pitr" was invalidated: .*; changes after \d+\/[0-9A-F]+ are lost to the archive$/m);
  } finally {
    gcs.clearFaults();
    archiver.child.kill('SIGKILL');
    archiver = undefined;
  }
});
