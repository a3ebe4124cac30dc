import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ListReport } from '../../src/ops/list';
import type { PruneReport } from '../../src/ops/prune';
import type { VerifyReport } from '../../src/ops/verify';
import { parseLsn } from '../../src/pg/lsn';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase } from '../harness/fingerprint';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { WriteLoad } from '../harness/write-load';
import { pollUntil } from '../harness/poll-until';
import { listFiles, segmentUploadsUnderWay } from '../harness/repo-files';
import { restoreOk } from '../restore/restore-helpers';

let fx: ArchiveFixture;
let archiver: PitrProcess;
let load: WriteLoad | undefined;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const files = (dir: string): string[] => listFiles(dir);

const segmentBases = (): string[] =>
  files(fx.repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.json'))
    .sort()
    .map((f) => f.slice(0, -'.json'.length));
/** END LSN of a segment from its name `segments/<HI>/<FIRST>-<END>`. */
const endOf = (base: string): bigint => BigInt(`0x${base.slice(-16)}`);

async function list(): Promise<ListReport> {
  const result = await runPitr(['list', '--repo', fx.repoDir, '--json']);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as ListReport;
}

async function prune(retention: string, extra: string[] = []): Promise<PruneReport> {
  const result = await runPitr(['prune', '--repo', fx.repoDir, '--retention', retention, '--json', '--log-level', 'warn', ...extra]);
  if (result.code !== 0) throw new Error(`prune exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as PruneReport;
}

async function verifyClean(): Promise<void> {
  const result = await runPitr(['verify', '--repo', fx.repoDir, '--json']);
  expect((JSON.parse(result.stdout) as VerifyReport).problems).toEqual([]);
  expect(result.code).toBe(0);
}

async function backup(): Promise<string> {
  const result = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  return (JSON.parse(result.stdout) as { id: string }).id;
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  load = new WriteLoad(fx.source).start();
  await sleep(700);
});
afterAll(async () => {
  await load?.stop();
  if (archiver.child.exitCode === null) await archiver.stop();
  await fx.destroy();
});

test('--retention is required', async () => {
  const result = await runPitr(['prune', '--repo', fx.repoDir]);
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(/--retention is required/);
});

let backupA: string;

test('the only backup is never removed; segments before it go', async () => {
  backupA = await backup();
  await sleep(500);
  const before = segmentBases();
  const report = await prune('1ms');
  const aligned = parseLsn((await list()).backups[0]?.alignedLsn ?? '0/0');
  expect(report.keptFrom?.backup).toBe(backupA);
  expect(report.removed.backups).toEqual([]);
  expect(existsSync(path.join(fx.repoDir, 'backups', backupA, 'manifest.json'))).toBe(true);
  const after = segmentBases();
  // everything that went ended at or before A's aligned LSN; at most one such segment (the chain's anchor) stays
  const gone = before.filter((b) => !after.includes(b));
  expect(report.removed.segments).toBe(gone.length);
  for (const b of gone) expect(endOf(b)).toBeLessThanOrEqual(aligned);
  expect(after.filter((b) => endOf(b) <= aligned).length).toBeLessThanOrEqual(1);
  await verifyClean();
});

test('prune keeps what restores to any point of the window need, beside a running archiver', async () => {
  await sleep(2000); // A's and B's end times at least 2 s apart
  const backupB = await backup();
  await sleep(700);
  const listed = await list();
  const [a, b] = listed.backups;
  expect(a?.id).toBe(backupA);
  expect(b?.id).toBe(backupB);
  const bAligned = parseLsn(b?.alignedLsn ?? '0/0');
  const allSegments = segmentBases();
  const allFiles = files(fx.repoDir).length;

  // a retention covering everything removes nothing
  const long = await prune('7d');
  expect(long.keptFrom?.backup).toBe(backupA);
  expect(long.removed).toMatchObject({ backups: [], segments: 0, bytes: 0 });
  expect(segmentBases()).toEqual(expect.arrayContaining(allSegments));

  // a window starting between A's and B's end times still needs A (restoring to its start replays from A)
  const between = (Date.parse(a?.endTime ?? '') + Date.parse(b?.endTime ?? '')) / 2;
  const kept = await prune(`${Date.now() - between}ms`);
  expect(kept.keptFrom).toMatchObject({ backup: backupA, alignedLsn: a?.alignedLsn });
  expect(kept.removed).toMatchObject({ backups: [], segments: 0 });
  expect(existsSync(path.join(fx.repoDir, 'backups', backupA, 'manifest.json'))).toBe(true);

  // a window starting just after B's end: B reaches its start, A and the segments before B go
  const afterB = Date.parse(b?.endTime ?? '') + 50;
  const retention = (): string => `${Date.now() - afterB}ms`;

  // --dry-run reports, changes nothing
  const dry = await prune(retention(), ['--dry-run']);
  expect(dry.dryRun).toBe(true);
  expect(dry.keptFrom).toMatchObject({ backup: backupB, alignedLsn: b?.alignedLsn });
  expect(dry.removed.backups).toEqual([backupA]);
  expect(dry.removed.segments).toBeGreaterThan(0);
  expect(dry.removed.bytes).toBeGreaterThan(0);
  expect(existsSync(path.join(fx.repoDir, 'backups', backupA, 'manifest.json'))).toBe(true);
  expect(segmentBases()).toEqual(expect.arrayContaining(allSegments));
  expect(files(fx.repoDir).length).toBeGreaterThanOrEqual(allFiles);
  const human = await runPitr(['prune', '--repo', fx.repoDir, '--retention', retention(), '--dry-run', '--log-level', 'warn']);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/would remove 1 backup, \d+ segments/);
  expect(human.stdout).toContain(backupA);
  expect(existsSync(path.join(fx.repoDir, 'backups', backupA))).toBe(true);

  // a dead incomplete backup older than the kept one (pieces without a started marker) goes too
  const dead = '0000000000000001-20200101T000000Z';
  mkdirSync(path.join(fx.repoDir, 'backups', dead, 'data'), { recursive: true });
  writeFileSync(path.join(fx.repoDir, 'backups', dead, 'data', '1.00000.copy.lz4'), 'leftover');

  // the real thing, while the archiver runs and the load goes on
  const segmentsBefore = segmentBases().length;
  const report = await prune(retention());
  expect(report.dryRun).toBe(false);
  expect(report.keptFrom).toMatchObject({ backup: backupB, alignedLsn: b?.alignedLsn });
  expect(report.removed.backups).toEqual([backupA]);
  expect(report.removed.incompleteBackups).toEqual([dead]);
  expect(existsSync(path.join(fx.repoDir, 'backups', backupA))).toBe(false);
  expect(existsSync(path.join(fx.repoDir, 'backups', dead))).toBe(false);
  expect(existsSync(path.join(fx.repoDir, 'backups', backupB, 'manifest.json'))).toBe(true);
  const remaining = segmentBases();
  expect(remaining.filter((s) => endOf(s) <= bAligned).length).toBeLessThanOrEqual(1); // only the chain's anchor
  expect(segmentsBefore - report.removed.segments).toBeLessThanOrEqual(remaining.length);
  // every kept segment has its data; data without a manifest is only an upload the archiver has under way (newer than all kept)
  const data = files(fx.repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.lz4'))
    .map((f) => f.slice(0, -'.lz4'.length));
  expect(remaining.filter((b) => !data.includes(b))).toEqual([]);
  const newestKept = remaining[remaining.length - 1] ?? '';
  expect(data.filter((b) => !remaining.includes(b) && b <= newestKept)).toEqual([]);
  const afterList = await list();
  expect(afterList.backups.map((x) => x.id)).toEqual([backupB]);
  expect(afterList.gaps).toEqual([]);

  // the archiver keeps running and storing segments
  await pollUntil(
    async () => segmentBases(),
    (newest) => newest[newest.length - 1] !== remaining[remaining.length - 1],
    'a segment stored after the prune',
  );
  expect(archiver.child.exitCode).toBeNull();

  await load?.stop();
  load = undefined;
  await fx.waitCaughtUp();
  // the last upload under way (data stored, manifest next) lands before verify reads the repository
  await pollUntil(
    async () => segmentUploadsUnderWay(fx.repoDir),
    (pending) => pending.length === 0,
    'every stored segment data object to have its manifest',
  );
  await verifyClean();

  const expected = await fingerprintDatabase(fx.source);
  const latest = await restoreOk(fx, 'after_prune_latest', 'latest');
  expect(latest.report.backup.id).toBe(backupB);
  expect(await fingerprintDatabase(fx.cluster.url('after_prune_latest'))).toEqual(expected);
  const justAfterB = new Date(Date.parse(b?.endTime ?? '') + 200).toISOString();
  const early = await restoreOk(fx, 'after_prune_early', justAfterB);
  expect(early.report.backup.id).toBe(backupB);
  expect(archiver.child.exitCode).toBeNull();
  expect(await archiver.stop()).toBe(0);
});
