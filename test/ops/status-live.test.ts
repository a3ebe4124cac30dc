import type { ListReport } from '../../src/ops/list';
import type { StatusReport } from '../../src/ops/status';
import { ArchiveFixture } from '../harness/archive-fixture';
import { pollUntil } from '../harness/poll-until';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { WriteLoad } from '../harness/write-load';

/**
 * `pitr status` against a live archiver: an idle source (the heartbeat keeps the newest archived commit
 * moving), a source under write load, and a slot invalidated by max_slot_wal_keep_size (a gap in the
 * archive: broken, never hidden).
 */
let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
let load: WriteLoad | undefined;

async function status(extra: string[] = []): Promise<{ code: number | null; report: StatusReport; stdout: string }> {
  const result = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--json', ...extra]);
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport, stdout: result.stdout };
}
const newestCommit = (r: StatusReport): number => Date.parse(r.window.latest?.time ?? '');

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.withClient((c) => WriteLoad.setup(c));
  expect((await fx.init()).code).toBe(0);
  archiver = fx.startArchiver(); // heartbeat every second
  await archiver.waitForState('streaming');
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json', '--log-level', 'warn']);
  expect(backup.code).toBe(0);
  await archiver.waitFor((l) => l.event === 'segment_stored');
});
afterAll(async () => {
  await load?.stop();
  if (archiver && archiver.child.exitCode === null) await archiver.stop();
  await fx.destroy();
});

test('idle source: the heartbeat keeps the newest archived commit moving, so the RPO stays small', async () => {
  const rows = async (): Promise<number> => Number((await fx.cluster.query<{ n: string }>('SELECT count(*) AS n FROM ledger'))[0]?.n);
  const rowsBefore = await rows();
  const first = await pollUntil(status, (s) => s.report.rpoSeconds !== null, 'an archived commit');
  const later = await pollUntil(status, (s) => newestCommit(s.report) > newestCommit(first.report), 'a newer archived commit with no traffic');
  expect(await rows()).toBe(rowsBefore); // nothing but the heartbeat committed
  expect(later.code).toBe(0);
  expect(later.report).toMatchObject({ health: 'healthy', archiver: 'running', reasons: [] });
  expect(later.report.rpoSeconds).toBeGreaterThanOrEqual(0);
  expect(later.report.rpoSeconds).toBeLessThan(15); // heartbeat 1 s, segments sealed after 200 ms
});

test('under write load: healthy, the newest archived commit follows the load, and list and status name the same window', async () => {
  load = new WriteLoad(fx.source).start();
  const first = await pollUntil(status, (s) => s.report.rpoSeconds !== null, 'a report');
  const moved = await pollUntil(status, (s) => newestCommit(s.report) > newestCommit(first.report), 'the load archived');
  expect(moved.code).toBe(0);
  expect(moved.report.health).toBe('healthy');
  expect(moved.report.rpoSeconds).toBeLessThan(15);
  expect(moved.report.slot.lagBytes).toBeGreaterThanOrEqual(0);
  expect(moved.report.slot.active).toBe(true);
  const loadedRows = load.committed.length;
  expect(loadedRows).toBeGreaterThan(0);
  await load.stop();
  load = undefined;
  await fx.waitCaughtUp();

  const listed = JSON.parse((await runPitr(['list', '--repo', fx.repoDir, '--json'])).stdout) as ListReport;
  const { report } = await status();
  expect(report.window.earliest).toEqual(listed.window.earliest);
  expect(report.window.earliest?.lsn).toBe(listed.backups[0]?.alignedLsn);
});

test('slot invalidated by max_slot_wal_keep_size: broken with the reason first, exit 2, and the archiver refuses to start', async () => {
  await fx.cluster.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  await fx.cluster.query('SELECT pg_reload_conf()');
  expect(await archiver?.stop()).toBe(0);
  archiver = undefined;

  // WAL the stopped archiver cannot consume, removed by checkpoints once past the slot's allowance
  await pollUntil(
    async () => {
      await fx.cluster.query("INSERT INTO ledger (id, payload) SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g ON CONFLICT (id) DO NOTHING");
      await fx.cluster.query('DELETE FROM ledger');
      await fx.cluster.query('SELECT pg_switch_wal()');
      await fx.cluster.query('CHECKPOINT');
      const rows = await fx.cluster.query<{ wal_status: string }>("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'pitr'");
      return rows[0]?.wal_status;
    },
    (walStatus) => walStatus === 'lost',
    'wal_status lost',
    40_000,
  );

  const { code, report } = await status();
  expect(code).toBe(2);
  expect(report.health).toBe('broken');
  expect(report.slot).toMatchObject({ exists: true, walStatus: 'lost' });
  expect(report.reasons[0]).toEqual({
    severity: 'critical',
    message:
      'replication slot "pitr" was invalidated (wal_status lost): the WAL it needed was removed and the archive has a gap; drop the slot, run "pitr init" and take a new backup',
  });
  const human = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir]);
  expect(human.code).toBe(2);
  expect(human.stdout).toMatch(/^PITR CRITICAL - replication slot "pitr" was invalidated/);
  expect(human.stdout).toMatch(/wal_status lost/);

  const refused = await runPitr(fx.archiveArgs(['--log-level', 'warn']), {}, 30_000);
  expect(refused.code).toBe(3);
  expect(refused.stderr).toMatch(/pitr: error: replication slot "pitr" was invalidated/);

  // init does not call a lost slot ready; dropped, it is created anew
  const init = await fx.init(['--log-level', 'warn']);
  expect(init.code).toBe(3);
  expect(init.stderr).toMatch(/^pitr: error: replication slot "pitr" was invalidated \(wal_status lost\)/);
  await fx.cluster.query("SELECT pg_drop_replication_slot('pitr')");
  const again = await fx.init(['--log-level', 'warn']);
  expect(again.code).toBe(0);
  expect(again.stdout).toMatch(/created +replication slot pitr/);

  // what the invalidation lost is recorded: a gap from the last archived commit to the new slot's start
  expect(again.stdout).toMatch(/^ {2}warning: the archive has a gap from its last archived commit, .* \(.*\), to the new slot's start, .* \(.*\): /m);
  expect(again.stdout).toMatch(/^then at once: pitr backup --source /m);
  const listed = JSON.parse((await runPitr(['list', '--repo', fx.repoDir, '--json'])).stdout) as ListReport;
  expect(listed.gaps).toEqual([expect.objectContaining({ cause: 'slot-recreated', slot: 'pitr', before: null })]);
  expect(listed.window.earliest).toBeNull();
  const after = await status();
  expect(after.code).toBe(2);
  expect(after.report.reasons[0]?.message).toMatch(/^the archive has a gap from .* \(replication slot "pitr" re-created\) and no base backup after it: /);
});
