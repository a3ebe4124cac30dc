import { readFileSync } from 'node:fs';
import path from 'node:path';
import { slotCreationName, type SlotCreation } from '../../src/archive/slot-creation';
import { parseLsn } from '../../src/pg/lsn';
import type { SegmentManifest } from '../../src/archive/segment-manifest';
import type { ArchiveGap, ListReport } from '../../src/ops/list';
import type { StatusReport } from '../../src/ops/status';
import type { VerifyReport } from '../../src/ops/verify';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { httpGet } from '../harness/http-get';
import { metricSample } from '../harness/metric-sample';
import { pollUntil } from '../harness/poll-until';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { listFiles, segmentUploadsUnderWay, objectFile } from '../harness/repo-files';
import { databaseFingerprints, errorLines, restoreFails, restoreOk } from '../restore/restore-helpers';

/**
 * A replication slot dropped (or invalidated) and created again by `pitr init`: the transactions committed
 * while no slot existed are not in the archive. The gap is recorded, and every reader names it: list,
 * verify, status, the metrics and restore. Restores before the gap still work from the old backup; after
 * it, only from a backup taken after it.
 */
let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
let metricsPort = 0;
/** The source's user tables when the archive was still whole (after phase B), and that moment. */
let beforeGap: { time: string; tables: Fingerprints };
/** A moment after the lost transactions committed, before the slot was created again. */
let insideGap: string;

const now = async (): Promise<string> =>
  ((await fx.cluster.query<{ t: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`))[0] as { t: string }).t;
const list = async (): Promise<ListReport> => JSON.parse((await runPitr(['list', '--repo', fx.repoDir, '--json'])).stdout) as ListReport;
const verify = async (): Promise<{ code: number | null; report: VerifyReport }> => {
  const result = await runPitr(['verify', '--repo', fx.repoDir, '--json']);
  return { code: result.code, report: JSON.parse(result.stdout) as VerifyReport };
};
const status = async (): Promise<{ code: number | null; report: StatusReport }> => {
  const result = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport };
};
const backup = async (): Promise<{ id: string; alignedLsn: string }> => {
  const result = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as { id: string; alignedLsn: string };
};
const creations = (): SlotCreation[] =>
  listFiles(fx.repoDir)
    .filter((f) => f.startsWith('slots/'))
    .sort()
    .map((f) => {
      const { checksum: _checksum, ...record } = JSON.parse(readFileSync(path.join(fx.repoDir, f), 'utf8')) as SlotCreation & { checksum: string };
      return record;
    });
const segmentManifests = (): SegmentManifest[] =>
  listFiles(fx.repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(objectFile(fx.repoDir, f), 'utf8')) as SegmentManifest);
const insert = (from: number, to: number): Promise<unknown> =>
  fx.cluster.query(`INSERT INTO items (id, note) SELECT g, 'row ' || g FROM generate_series(${from}, ${to}) g`);
/** Starts the archiver and waits until it streams. */
async function startArchiver(extra: string[] = []): Promise<PitrProcess> {
  const started = fx.startArchiver(extra);
  await started.waitForState('streaming');
  return started;
}
/**
 * Commits a change and waits until it is archived, so the repository holds everything up to now. The
 * insert position, not pg_current_wal_lsn(): the test cluster commits asynchronously, so the written
 * position can still be behind the commit.
 */
async function archived(): Promise<void> {
  await fx.cluster.query("UPDATE items SET note = note || '.' WHERE id = 1");
  const [{ lsn }] = (await fx.cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
  await pollUntil(
    () => fx.cluster.query<{ ok: boolean }>("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'", [lsn]),
    (rows) => rows[0]?.ok === true,
    `the slot to confirm ${lsn}`,
  );
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.query('CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL)');
});
afterAll(async () => {
  if (archiver && archiver.child.exitCode === null) await archiver.stop();
  await fx.destroy();
});

test('a fresh repository: init records the slot, the archive has no gap, and a restarted archiver continues the chain', async () => {
  const init = await fx.init(['--json', '--log-level', 'warn']);
  expect(init.code).toBe(0);
  const summary = JSON.parse(init.stdout) as { warnings: string[]; gap: unknown; slotCreation: SlotCreation };
  expect(summary.warnings).toEqual([]);
  expect(summary.gap).toBeNull();
  expect(creations()).toEqual([summary.slotCreation]);
  expect(summary.slotCreation).toMatchObject({ kind: 'slot-creation', slot: 'pitr', latestSegment: null });
  expect(summary.slotCreation.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  // init is idempotent: a second run finds the slot and records nothing
  expect((await fx.init(['--log-level', 'warn'])).code).toBe(0);
  expect(creations()).toHaveLength(1);

  archiver = await startArchiver();
  await insert(1, 5);
  await backup();
  await insert(6, 10);
  await archived();
  beforeGap = { time: await now(), tables: await fingerprintDatabase(fx.source) };
  expect(await archiver.stop()).toBe(0);

  // restarted without a new slot: the chain goes on
  const segmentsBefore = segmentManifests().length;
  archiver = await startArchiver();
  await archived();
  expect(await archiver.stop()).toBe(0);
  archiver = undefined;
  const segments = segmentManifests();
  expect(segments.length).toBeGreaterThan(segmentsBefore);
  expect(segments[0]?.previous).toBeNull();
  for (let i = 1; i < segments.length; i++) expect(segments[i]?.previous?.name).toBe(segments[i - 1]?.name);
  expect((await list()).gaps).toEqual([]);
  expect((await verify()).code).toBe(0);
});

test('slot dropped, transactions lost, init again: it warns of the gap and the re-started archiver starts a new chain', async () => {
  const lastArchived = segmentManifests().at(-1) as SegmentManifest;
  await fx.cluster.query("SELECT pg_drop_replication_slot('pitr')");
  // committed while no slot exists: never archived
  await insert(11, 15);
  await fx.cluster.query("UPDATE items SET note = 'changed in the gap' WHERE id = 2");
  insideGap = await now();

  const init = await fx.init(['--json', '--log-level', 'warn']);
  expect(init.code).toBe(0);
  const summary = JSON.parse(init.stdout) as { warnings: string[]; gap: { from: unknown; to: unknown }; slotCreation: SlotCreation };
  const record = summary.slotCreation;
  expect(record.latestSegment).toEqual({
    name: lastArchived.name,
    sha256: lastArchived.sha256,
    endLsn: lastArchived.endLsn,
    lastCommitLsn: lastArchived.lastCommitLsn,
    lastCommitTime: lastArchived.lastCommitTime,
  });
  expect(summary.gap).toEqual({
    from: { lsn: lastArchived.lastCommitLsn, time: lastArchived.lastCommitTime },
    to: { lsn: record.consistentPoint, time: record.createdAt },
  });
  expect(summary.warnings).toEqual([
    `the archive has a gap from its last archived commit, ${lastArchived.lastCommitTime} (${lastArchived.lastCommitLsn}), to the new slot's start, ` +
      `${record.createdAt} (${record.consistentPoint}): transactions committed in between were not archived and nothing in that gap can be restored; ` +
      `start the archiver and take a new base backup now: pitr backup --source ${fx.source} --repo ${fx.repoDir}`,
  ]);
  expect(creations()).toHaveLength(2);

  archiver = await startArchiver(['--listen', '127.0.0.1:0']);
  metricsPort = (await archiver.waitFor((l) => l.event === 'listening')).port as number;
  const chainBreak = await archiver.waitFor((l) => l.event === 'chain_break');
  expect(chainBreak).toMatchObject({
    after: lastArchived.name,
    from: { lsn: lastArchived.lastCommitLsn, time: lastArchived.lastCommitTime },
    to: { lsn: record.consistentPoint, time: record.createdAt },
  });
  await insert(16, 20);
  await archived();
  const firstAfter = segmentManifests().find((s) => s.name > lastArchived.name) as SegmentManifest;
  expect(firstAfter.previous).toBeNull();
});

/** The one gap, as list shows it. */
async function theGap(): Promise<ArchiveGap> {
  const { gaps } = await list();
  expect(gaps).toHaveLength(1);
  return gaps[0] as ArchiveGap;
}
const boundsIn = (text: string, gap: ArchiveGap): void => {
  for (const bound of [gap.from?.time, gap.from?.lsn, gap.to.time, gap.to.lsn]) expect(text).toContain(bound);
};

test('before a new backup: list, verify, status and the metrics report the gap; restores into or after it are refused', async () => {
  const [record] = creations().slice(-1) as [SlotCreation];
  const report = await list();
  expect(report.gaps).toEqual([
    {
      cause: 'slot-recreated',
      slot: 'pitr',
      after: record.latestSegment?.name,
      before: expect.stringMatching(/^segments\//),
      fromLsn: record.latestSegment?.endLsn,
      toLsn: record.consistentPoint,
      from: { lsn: record.latestSegment?.lastCommitLsn, time: record.latestSegment?.lastCommitTime },
      to: { lsn: record.consistentPoint, time: record.createdAt },
    },
  ]);
  const gap = report.gaps[0] as ArchiveGap;
  // the old backup's range ends at the gap; nothing reaches the archive's end
  expect(report.ranges).toEqual([{ earliest: expect.anything(), latest: gap.from, backup: report.backups[0]?.id }]);
  expect(report.window.earliest).toBeNull();
  const human = await runPitr(['list', '--repo', fx.repoDir]);
  expect(human.stdout).toContain(`gap: from ${gap.from?.time} (${gap.from?.lsn}) to ${gap.to.time} (${gap.to.lsn}): replication slot "pitr" was re-created`);
  expect(human.stdout).toContain('no backup after the last gap');

  const verified = await verify();
  expect(verified.code).toBe(7);
  expect(verified.report.problems).toEqual([
    { object: slotCreationName('pitr', parseLsn(record.consistentPoint)), status: 'gap', detail: expect.stringContaining('no base backup after it') },
  ]);
  boundsIn(verified.report.problems[0]?.detail ?? '', gap);

  const { code, report: health } = await status();
  expect(code).toBe(2);
  expect(health.health).toBe('broken');
  expect(health.reasons[0]?.message).toMatch(
    /^the archive has a gap from .* \(replication slot "pitr" re-created\) and no base backup after it: nothing after .* can be restored; take a new base backup now \("pitr backup"\)$/,
  );
  boundsIn(health.reasons[0]?.message ?? '', gap);
  expect(health.gaps).toEqual([gap]);
  expect(health.window.earliest).toBeNull();
  const metrics = await pollUntil(
    () => httpGet(metricsPort, '/metrics'),
    (a) => metricSample(a.body, 'pitr_health') === 2,
    'the endpoint to say broken',
  );
  expect(metricSample(metrics.body, 'pitr_recoverable_window_seconds')).toBeUndefined();

  const inside = await restoreFails(fx, 'inside_gap', insideGap);
  expect(inside.code).toBe(7);
  const [message, hint] = errorLines(inside);
  expect(message).toMatch(
    /^pitr: error: restore target .* lies inside a gap in the archive from .* \(replication slot "pitr" re-created\): no point inside it can be restored$/,
  );
  boundsIn(message ?? '', gap);
  expect(hint).toMatch(/take one now \("pitr backup"\)/);

  const latest = await restoreFails(fx, 'latest_no_backup', 'latest');
  expect(latest.code).toBe(7);
  const [latestMessage, latestHint] = errorLines(latest);
  expect(latestMessage).toMatch(/lies after a gap in the archive from .* \(replication slot "pitr" re-created\) and every base backup is older than the gap$/);
  boundsIn(latestMessage ?? '', gap);
  expect(latestHint).toMatch(/^hint: take a new base backup now \("pitr backup"\)/);

  // before the gap: the old backup still restores exactly
  await restoreOk(fx, 'before_gap', beforeGap.time);
  expect(await databaseFingerprints(fx, 'before_gap')).toEqual(beforeGap.tables);
});

test('after a new backup: latest restores the source, the gap stays reported, and points inside it stay refused', async () => {
  const gap = await theGap();
  const newer = await backup();
  await archived();
  const report = await list();
  expect(report.window.earliest?.lsn).toBe(newer.alignedLsn);
  expect(report.ranges).toHaveLength(2);
  expect(report.ranges[0]?.latest).toEqual(gap.from);
  // the new backup holds the lost transactions: its earliest point is after the gap, never inside it
  expect(Date.parse(report.window.earliest?.time ?? '')).toBeGreaterThanOrEqual(Date.parse(gap.to.time));
  const human = await runPitr(['list', '--repo', fx.repoDir]);
  expect(human.stdout).toMatch(/^restorable before a gap: .* to .* \(from backup .*\)$/m);

  const verified = await verify();
  expect(verified.report.problems).toEqual([]);
  expect(verified.code).toBe(0);
  expect(verified.report.recordedGaps).toEqual([
    { object: expect.stringMatching(/^slots\/pitr\//), status: 'gap', detail: expect.stringContaining(`backup ${newer.id}`) },
  ]);
  // an upload the live archiver has under way (data stored, manifest next) lands before verify reads
  await pollUntil(
    async () => segmentUploadsUnderWay(fx.repoDir),
    (pending) => pending.length === 0,
    'every stored segment data object to have its manifest',
  );
  const verifiedText = await runPitr(['verify', '--repo', fx.repoDir]);
  expect(verifiedText.stdout).toMatch(/is intact: .*; 1 recorded gap \(a re-created replication slot\): nothing inside can be restored$/m);

  const { code, report: health } = await status();
  expect(health.reasons).toEqual([]);
  expect(code).toBe(0);
  expect(health.gaps).toEqual([gap]);
  expect(health.window.earliest?.lsn).toBe(newer.alignedLsn);
  await pollUntil(
    () => httpGet(metricsPort, '/metrics'),
    (a) => metricSample(a.body, 'pitr_health') === 0 && metricSample(a.body, 'pitr_recoverable_window_seconds') !== undefined,
    'the endpoint to say healthy with a window',
  );

  await restoreOk(fx, 'latest_after', 'latest');
  expect(await databaseFingerprints(fx, 'latest_after')).toEqual(await fingerprintDatabase(fx.source));
  const inside = await restoreFails(fx, 'inside_gap_again', insideGap);
  expect(inside.code).toBe(7);
  expect(errorLines(inside)[1]).toContain(`or from ${report.window.earliest?.time} (${report.window.earliest?.lsn}) on (backup ${newer.id})`);
  await restoreOk(fx, 'before_gap_again', beforeGap.time);
  expect(await databaseFingerprints(fx, 'before_gap_again')).toEqual(beforeGap.tables);

  // a second start of the archiver continues the new chain: still the one gap
  expect(await archiver?.stop()).toBe(0);
  archiver = await startArchiver();
  await archived();
  expect(archiver.lines.some((l) => l.event === 'chain_break')).toBe(false);
  expect(await theGap()).toEqual(gap);
});

test('archive --backup-every takes a base backup at once when the slot was re-created and no backup follows the gap', async () => {
  expect(await archiver?.stop()).toBe(0);
  archiver = undefined;
  await fx.cluster.query("SELECT pg_drop_replication_slot('pitr')");
  await insert(9001, 9005); // lost: no slot
  expect((await fx.init(['--log-level', 'warn'])).code).toBe(0);
  const record = creations().at(-1) as SlotCreation;
  // the newest backup ended moments ago: only the gap makes a 24h schedule take one now
  archiver = await startArchiver(['--backup-every', '24h']);
  const scheduled = await archiver.waitFor((l) => l.event === 'scheduled_backup');
  expect(scheduled.afterGap).toBe(record.consistentPoint);
  await pollUntil(
    async () => (await list()).backups,
    (backups) => backups.some((b) => parseLsn(b.alignedLsn) >= parseLsn(record.consistentPoint)),
    'a backup aligned after the new slot was created',
  );
  const { report: health } = await status();
  expect(health.reasons.filter((r) => r.message.includes('gap'))).toEqual([]);
});
