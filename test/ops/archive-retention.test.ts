import { existsSync } from 'node:fs';
import path from 'node:path';
import type { VerifyReport } from '../../src/ops/verify';
import { ArchiveFixture } from '../harness/archive-fixture';
import { pollUntil } from '../harness/poll-until';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { listFiles } from '../harness/repo-files';
import { WriteLoad } from '../harness/write-load';

/** `pitr archive --retention`: the archiver prunes by itself, beside the stream, never the only backup. */
let fx: ArchiveFixture;
let archiver: PitrProcess;
let load: WriteLoad | undefined;

const segmentManifests = (): string[] => listFiles(fx.repoDir).filter((f) => f.startsWith('segments/') && f.endsWith('.json'));
const hasBackup = (id: string): boolean => existsSync(path.join(fx.repoDir, 'backups', id, 'manifest.json'));

async function backup(): Promise<{ id: string; endTime: string }> {
  const result = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as { id: string; endTime: string };
}

/** Waits for a prune the archiver started after `time` (ms since the epoch). */
async function prunedAfter(time: number): Promise<Record<string, unknown>> {
  return archiver.waitFor((l) => l.event === 'pruned' && (l.time as number) > time, 30_000);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
  // a 3 s window: the archiver prunes every second
  archiver = fx.startArchiver(['--retention', '3s']);
  await archiver.waitForState('streaming');
  load = new WriteLoad(fx.source).start();
  await pollUntil(
    async () => segmentManifests().length,
    (n) => n >= 3,
    'a few segments',
  );
});
afterAll(async () => {
  await load?.stop();
  if (archiver.child.exitCode === null) await archiver.stop();
  await fx.destroy();
});

test('the archiver prunes on its own: never the only backup, an older one once a newer covers the window', async () => {
  // no backup yet: nothing can be restored from the segments, so nothing goes
  await prunedAfter(Date.now());
  expect(segmentManifests().length).toBeGreaterThanOrEqual(3);

  const a = await backup();
  // long after A ended, A is still the only backup: kept, while the segments before it go (but the chain's anchor)
  const aEnded = Date.parse(a.endTime);
  const first = await prunedAfter(aEnded + 3_500);
  expect(first.keptFrom).toBe(a.id);
  expect(hasBackup(a.id)).toBe(true);
  const aligned = BigInt(`0x${a.id.slice(0, 16)}`);
  await pollUntil(
    async () => segmentManifests().filter((f) => BigInt(`0x${f.slice(-'.json'.length - 16, -'.json'.length)}`) <= aligned).length,
    (before) => before <= 1,
    'segments before backup A pruned',
  );

  const b = await backup();
  const bEnded = Date.parse(b.endTime);
  await pollUntil(
    async () => hasBackup(a.id),
    (present) => !present,
    'backup A pruned once B covers the window',
  );
  expect(hasBackup(b.id)).toBe(true);
  // a prune that listed the repository before A went may still report A; the next ones keep from B
  await archiver.waitFor((l) => l.event === 'pruned' && (l.time as number) > bEnded + 3_000 && l.keptFrom === b.id, 30_000);
  expect(hasBackup(b.id)).toBe(true);

  // the stream went on throughout, and what is left is intact
  await load?.stop();
  load = undefined;
  await fx.waitCaughtUp();
  expect(archiver.child.exitCode).toBeNull();
  expect(await archiver.stop()).toBe(0);
  const verified = await runPitr(['verify', '--repo', fx.repoDir, '--json']);
  expect((JSON.parse(verified.stdout) as VerifyReport).problems).toEqual([]);
  expect(verified.code).toBe(0);
});
