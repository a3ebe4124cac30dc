import { readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatUnixMicros, parseIsoMicros } from '../../src/pg/pg-time';
import type { ListReport } from '../../src/ops/list';
import type { Problem, VerifyReport } from '../../src/ops/verify';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr } from '../harness/pitr-process';
import { WriteLoad } from '../harness/write-load';
import { listFiles, RepoCopies, objectFile } from '../harness/repo-files';
import { ArchiveView } from '../../src/archive/archive-view';
import { Repository } from '../../src/archive/repository';
import { LocalStorage } from '../../src/storage/local/local-storage';

let fx: ArchiveFixture;
let backupId: string;
let segments: string[]; // segment base names (relative to the repository), in LSN order
const copies = new RepoCopies('pitr-verify-');
const files = (dir: string): string[] => listFiles(dir);
const copyRepo = (): string => copies.copy(fx.repoDir);

function flipByte(file: string): void {
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  writeFileSync(file, bytes);
}

async function verify(repo: string, extra: string[] = []): Promise<{ code: number | null; report: VerifyReport }> {
  const result = await runPitr(['verify', '--repo', repo, '--json', ...extra]);
  return { code: result.code, report: JSON.parse(result.stdout) as VerifyReport };
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  const load = new WriteLoad(fx.source).start();
  await new Promise((r) => setTimeout(r, 700));
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  expect(backup.code).toBe(0);
  backupId = (JSON.parse(backup.stdout) as { id: string }).id;
  await new Promise((r) => setTimeout(r, 500));
  expect((await runPitr(['mark', 'x', '--source', fx.source])).code).toBe(0);
  await new Promise((r) => setTimeout(r, 700));
  await load.stop();
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  segments = files(fx.repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.json'))
    .sort()
    .map((f) => f.slice(0, -'.json'.length));
  expect(segments.length).toBeGreaterThanOrEqual(3);
});
afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

test('list shows the backup, the segment coverage, the mark and the recoverable window', async () => {
  const result = await runPitr(['list', '--repo', fx.repoDir, '--json']);
  expect(result.code).toBe(0);
  const report = JSON.parse(result.stdout) as ListReport;
  expect(report.backups).toHaveLength(1);
  const [backup] = report.backups;
  expect(backup).toMatchObject({ id: backupId, tables: 1 });
  expect(backup?.rows).toBeGreaterThan(0);
  expect(backup?.storedBytes).toBeGreaterThan(0);
  expect(backup?.seconds).toEqual(expect.any(Number));
  expect(backup?.seconds).toBeLessThan(300);
  expect(report.segments.count).toBe(segments.length);
  expect(report.segments.first?.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  expect(report.gaps).toEqual([]);
  expect(report.marks).toHaveLength(1);
  expect(report.marks[0]?.name).toBe('x');
  expect(segments).toContain(report.marks[0]?.segment);
  // the earliest point is the newest commit inside the backup (exact), not the backup's end time
  expect(report.window.earliest?.lsn).toBe(backup?.alignedLsn);
  expect(Date.parse(report.window.earliest?.time ?? '')).toBeLessThanOrEqual(Date.parse(backup?.endTime ?? ''));
  expect(report.window.earliest?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  expect(report.window.latest).toEqual(report.segments.last);
  // the restore planner names the same window
  const dryRun = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('never_created'), '--to', 'latest', '--dry-run', '--json']);
  expect(dryRun.code).toBe(0);
  const planned = (JSON.parse(dryRun.stdout) as { plan: { window: unknown } }).plan.window;
  expect(planned).toEqual(report.window);

  const human = await runPitr(['list', '--repo', fx.repoDir]);
  expect(human.code).toBe(0);
  expect(human.stdout).toContain(backupId);
  expect(human.stdout).toContain(`segments: ${segments.length}`);
  expect(human.stdout).toMatch(/mark: x in segments\//);
  expect(human.stdout).toMatch(/recoverable window: /);
});

test('verify passes a clean repository, shallow and deep', async () => {
  const shallow = await verify(fx.repoDir);
  expect(shallow.report.problems).toEqual([]);
  expect(shallow.code).toBe(0);
  expect(shallow.report.ok).toBe(true);
  expect(shallow.report.checked.objects).toBeGreaterThan(segments.length * 2);
  const deep = await verify(fx.repoDir, ['--deep']);
  expect(deep.report.problems).toEqual([]);
  expect(deep.code).toBe(0);
  expect(deep.report.checked).toEqual(shallow.report.checked);
  const human = await runPitr(['verify', '--repo', fx.repoDir]);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/is intact/);
});

const problem = (object: string, status: Problem['status']): Problem => expect.objectContaining({ object, status }) as Problem;

test('verify catches damaged and missing objects and reports them all', async () => {
  const middle = segments[Math.floor(segments.length / 2)] as string;
  const next = segments[Math.floor(segments.length / 2) + 1] as string;

  // a flipped byte in a segment: corrupt (shallow by its sha256, deep too)
  const flipped = copyRepo();
  flipByte(objectFile(flipped, `${middle}.lz4`));
  for (const extra of [[], ['--deep']]) {
    const { code, report } = await verify(flipped, extra);
    expect(code).toBe(7);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([problem(`${middle}.lz4`, 'corrupt')]);
  }
  const human = await runPitr(['verify', '--repo', flipped]);
  expect(human.code).toBe(7);
  expect(human.stdout).toMatch(new RegExp(`^corrupt +${middle}\\.lz4 +sha256 [0-9a-f]{64} does not match`, 'm'));
  expect(human.stdout).toMatch(/1 problem found in /);

  // a deleted segment: missing
  const deleted = copyRepo();
  unlinkSync(objectFile(deleted, `${middle}.lz4`));
  expect(await verify(deleted)).toEqual({ code: 7, report: expect.objectContaining({ problems: [problem(`${middle}.lz4`, 'missing')] }) });

  // a deleted segment manifest: its data is unreferenced, and the chain has a gap
  const unmanifested = copyRepo();
  unlinkSync(objectFile(unmanifested, `${middle}.json`));
  const gap = await verify(unmanifested);
  expect(gap.code).toBe(7);
  expect(gap.report.problems).toEqual(expect.arrayContaining([problem(`${middle}.lz4`, 'unreferenced'), problem(`${next}.json`, 'gap')]));
  // list trusts the index (a cache of the manifests, checked by verify): without it, it reads the manifests.
  // The index holds full pages only (the archiver writes one per PAGE_FANOUT segments, the rest is a tail read
  // from the listing): when a page holds the segment, verify says the index names what is gone
  const catalog = (await ArchiveView.open(new Repository(new LocalStorage(unmanifested)))).source.catalog;
  if (catalog?.pages.some((p) => p.first.name <= middle && middle <= p.last.name))
    expect(gap.report.problems).toEqual(expect.arrayContaining([expect.objectContaining({ detail: expect.stringContaining(`names segment ${middle}`) })]));
  rmSync(path.join(unmanifested, 'index'), { recursive: true, force: true });
  const listed = JSON.parse((await runPitr(['list', '--repo', unmanifested, '--json'])).stdout) as ListReport;
  expect(listed.gaps).toEqual([expect.objectContaining({ before: next })]);

  // data beyond the newest manifest is an upload under way (data is stored before its manifest): not a problem
  const newest = segments[segments.length - 1] as string;
  const underWay = copyRepo();
  unlinkSync(objectFile(underWay, `${newest}.json`));
  expect((await verify(underWay)).report.problems).not.toEqual(expect.arrayContaining([problem(`${newest}.lz4`, 'unreferenced')]));

  // a flipped byte in a backup chunk: corrupt
  const chunkRepo = copyRepo();
  const chunk = files(chunkRepo).find((f) => f.startsWith(`backups/${backupId}/data/`)) as string;
  flipByte(path.join(chunkRepo, chunk));
  expect(await verify(chunkRepo)).toEqual({ code: 7, report: expect.objectContaining({ problems: [problem(chunk, 'corrupt')] }) });

  // a deleted backup manifest: the folder is an unreferenced, incomplete backup
  const noManifest = copyRepo();
  unlinkSync(path.join(noManifest, 'backups', backupId, 'manifest.json'));
  expect(await verify(noManifest)).toEqual({ code: 7, report: expect.objectContaining({ problems: [problem(`backups/${backupId}/`, 'unreferenced')] }) });
});

test('verify --since checks only the segments with commits from then on and the backups needed from there', async () => {
  const full = await verify(fx.repoDir);
  const repo = fx.repository();
  const middle = Math.floor(segments.length / 2);
  const anchor = await repo.readSegmentManifest(`${segments[middle] as string}.json`);
  const since = formatUnixMicros(parseIsoMicros(anchor.lastCommitTime) + 1n);

  const partial = await verify(fx.repoDir, ['--since', since]);
  expect(partial.report.problems).toEqual([]);
  expect(partial.code).toBe(0);
  // the segments up to the anchor (manifest and data each) are neither read nor counted; the backup is
  expect(partial.report.checked.objects).toBe(full.report.checked.objects - 2 * (middle + 1));
  const human = await runPitr(['verify', '--repo', fx.repoDir, '--since', since]);
  expect(human.stdout).toContain(`checked (what matters from ${since} on)`);

  // damage before the range goes unseen, damage inside it is reported
  const before = copyRepo();
  flipByte(objectFile(before, `${segments[middle] as string}.lz4`));
  expect((await verify(before, ['--since', since])).code).toBe(0);
  const inside = copyRepo();
  const damaged = segments[middle + 1] as string;
  flipByte(objectFile(inside, `${damaged}.lz4`));
  expect(await verify(inside, ['--since', since])).toEqual({
    code: 7,
    report: expect.objectContaining({ problems: [problem(`${damaged}.lz4`, 'corrupt')] }),
  });
  // a missing segment manifest inside the range breaks the chain there
  const gap = copyRepo();
  unlinkSync(objectFile(gap, `${damaged}.json`));
  const gapped = await verify(gap, ['--since', since]);
  expect(gapped.code).toBe(7);
  expect(gapped.report.problems).toEqual(expect.arrayContaining([problem(`${damaged}.lz4`, 'unreferenced')]));

  // from a time after everything: only the newest backup (ended by then) is checked
  const future = await verify(fx.repoDir, ['--since', '2999-01-01']);
  expect(future.code).toBe(0);
  const backupObjects = full.report.checked.objects - 1 - 2 * segments.length;
  expect(future.report.checked.objects).toBe(1 + backupObjects);

  const bad = await runPitr(['verify', '--repo', fx.repoDir, '--since', 'yesterday']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/^pitr: error: verify: --since "yesterday" is not a time/);
});
