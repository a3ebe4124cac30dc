import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { StatusReport } from '../../src/ops/status';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { RepoCopies } from '../harness/repo-files';

let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
let backupId: string;
const copies = new RepoCopies('pitr-status-');

async function status(extra: string[] = [], repo = fx.repoDir, source = fx.source): Promise<{ code: number | null; report: StatusReport }> {
  const result = await runPitr(['status', '--source', source, '--repo', repo, '--json', ...extra]);
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport };
}

async function waitSlotActive(active: boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const rows = await fx.cluster.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = 'pitr'");
    if (rows[0]?.active === active) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`slot did not become ${active ? 'active' : 'inactive'}`);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql('CREATE TABLE t (id int PRIMARY KEY, v text)');
  expect((await fx.init()).code).toBe(0);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await fx.cluster.psql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g");
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  expect(backup.code).toBe(0);
  backupId = (JSON.parse(backup.stdout) as { id: string }).id;
  await fx.cluster.psql("INSERT INTO t VALUES (1000, 'after')");
  await fx.waitCaughtUp();
  // the segment holding the last commit is sealed 200 ms after it arrived
  const deadline = Date.now() + 10_000;
  while ((await fx.repository().latestSegment()) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
});
afterAll(async () => {
  if (archiver) await archiver.stop();
  copies.removeAll();
  await fx.destroy();
});

test('healthy while the archiver runs and the backup is recent', async () => {
  const { code, report } = await status();
  expect(report.reasons).toEqual([]);
  expect(code).toBe(0);
  expect(report.health).toBe('healthy');
  expect(report.archiver).toBe('running');
  expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
  expect(report.rpoSeconds).toBeLessThan(60);
  expect(report.slot).toMatchObject({ name: 'pitr', exists: true, active: true, walStatus: expect.any(String) as string });
  expect(report.slot.activePid).toEqual(expect.any(Number));
  expect(report.slot.lagBytes).toBeGreaterThanOrEqual(0);
  expect(report.slot.confirmedFlushLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
  expect(report.backup).toMatchObject({ id: backupId });
  expect(report.backup?.ageSeconds).toBeGreaterThanOrEqual(0);
  expect(report.window.earliest).not.toBeNull();
  expect(report.window.latest).not.toBeNull();

  const human = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir]);
  expect(human.code).toBe(0);
  expect(human.stdout.split('\n')[0]).toMatch(/^PITR OK - /);
  expect(human.stdout).toContain(backupId);
});

test('--max-lag 1ms makes it degraded with an rpo reason; tight limits on slot lag and backup age too', async () => {
  const lag = await status(['--max-lag', '1ms']);
  expect(lag.code).toBe(1);
  expect(lag.report.health).toBe('degraded');
  expect(lag.report.archiver).toBe('stalled');
  expect(lag.report.reasons).toEqual([{ severity: 'warning', message: expect.stringMatching(/^rpo .* exceeds --max-lag 1ms/) as string }]);
  const human = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--max-lag', '1ms']);
  expect(human.code).toBe(1);
  expect(human.stdout).toMatch(/^PITR WARNING - rpo /);

  const old = await status(['--max-backup-age', '1ms']);
  expect(old.code).toBe(1);
  expect(old.report.reasons).toEqual([{ severity: 'warning', message: expect.stringContaining(`newest backup ${backupId} is`) as string }]);
});

test('critical thresholds: broken past --critical-lag and --critical-backup-age, degraded while only the warning limit is passed', async () => {
  const warned = await status(['--max-lag', '1ms', '--critical-lag', '1d', '--max-backup-age', '1ms', '--critical-backup-age', '1d']);
  expect(warned.code).toBe(1);
  expect(warned.report.health).toBe('degraded');
  expect(warned.report.reasons.map((r) => r.severity)).toEqual(['warning', 'warning']);

  const rpo = await status(['--max-lag', '1ms', '--critical-lag', '1ms']);
  expect(rpo.code).toBe(2);
  expect(rpo.report.thresholds).toEqual({
    maxLagSeconds: 0.001,
    criticalLagSeconds: 0.001,
    maxSlotLagBytes: 1024 ** 3,
    criticalSlotLagBytes: null,
    maxBackupAgeSeconds: 48 * 3600,
    criticalBackupAgeSeconds: null,
    criticalStoppedSeconds: null,
  });
  expect(rpo.report.health).toBe('broken');
  expect(rpo.report.archiver).toBe('stalled');
  expect(rpo.report.reasons).toEqual([
    { severity: 'critical', message: expect.stringMatching(/^rpo .* exceeds --critical-lag 1ms \(newest archived commit /) as string },
  ]);
  const human = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--critical-lag', '1ms']);
  expect(human.code).toBe(2);
  expect(human.stdout).toMatch(/^PITR CRITICAL - rpo .* exceeds --critical-lag 1ms/);
  expect(human.stdout).toMatch(/^reason: critical: rpo /m);

  const age = await status(['--critical-backup-age', '1ms']);
  expect(age.code).toBe(2);
  expect(age.report.reasons).toEqual([
    {
      severity: 'critical',
      message: expect.stringMatching(new RegExp(`^newest backup ${backupId} is .* old, more than --critical-backup-age 1ms$`)) as string,
    },
  ]);

  // the most severe reason first, whatever the order of the checks
  const both = await status(['--max-lag', '1ms', '--critical-backup-age', '1ms']);
  expect(both.report.reasons.map((r) => r.severity)).toEqual(['critical', 'warning']);
  expect(both.report.reasons[1]?.message).toMatch(/^rpo /);
});

test('could not check: exit 3 (UNKNOWN) for bad usage and an unreadable repository, never 2', async () => {
  const unknownFlag = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--max-lga', '1m']);
  expect(unknownFlag.code).toBe(3);
  expect(unknownFlag.stderr).toBe('pitr: error: status: unknown option --max-lga\nhint: run "pitr status --help" for the options it takes\n');
  const badValue = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--critical-lag', 'soon', '--json']);
  expect(badValue.code).toBe(3);
  expect(JSON.parse(badValue.stdout)).toMatchObject({ error: { kind: 'Usage', code: 3, message: 'status: invalid value for --critical-lag: "soon"' } });

  const file = path.join(copies.copy(fx.repoDir), 'not-a-directory');
  writeFileSync(file, '');
  const unreadable = await status([], file);
  expect(unreadable.code).toBe(3);
  expect(unreadable.report.health).toBe('unknown');
  expect(unreadable.report.reasons).toEqual([
    { severity: 'unknown', message: expect.stringMatching(/^repository .*not-a-directory unreadable: .*is a file, not a directory/) as string },
  ]);
  const human = await runPitr(['status', '--source', fx.source, '--repo', file]);
  expect(human.code).toBe(3);
  expect(human.stdout).toMatch(/^PITR UNKNOWN - repository /);

  const help = await runPitr(['status', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('exits 0 OK (healthy), 1 WARNING (degraded), 2 CRITICAL (broken), 3 UNKNOWN (could not check');
  expect(help.stdout).toMatch(/--critical-lag DURATION +broken when the newest archived commit is older than this/);
});

test('no base backup: degraded', async () => {
  const repo = copies.copy(fx.repoDir);
  rmSync(path.join(repo, 'backups'), { recursive: true, force: true });
  const { code, report } = await status([], repo);
  expect(code).toBe(1);
  expect(report.health).toBe('degraded');
  expect(report.backup).toBeNull();
  expect(report.reasons).toEqual([{ severity: 'warning', message: 'no base backup' }]);
});

test('empty repository and unreachable source: broken, exit 2', async () => {
  const empty = copies.copy(fx.repoDir);
  rmSync(empty, { recursive: true, force: true });
  const noRepo = await status([], empty);
  expect(noRepo.code).toBe(2);
  expect(noRepo.report.health).toBe('broken');
  expect(noRepo.report.reasons).toEqual([{ severity: 'critical', message: expect.stringContaining('is empty or not initialised') as string }]);

  const wrongPort = fx.cluster.url('postgres').replace(`:${fx.cluster.port}/`, ':1/');
  const down = await status([], fx.repoDir, wrongPort);
  expect(down.code).toBe(2);
  expect(down.report.health).toBe('broken');
  expect(down.report.archiver).toBe('unknown');
  expect(down.report.reasons).toEqual([
    { severity: 'critical', message: expect.stringMatching(/^source unreachable: cannot connect to .*connection refused/) as string },
  ]);
  const human = await runPitr(['status', '--source', wrongPort, '--repo', fx.repoDir]);
  expect(human.code).toBe(2);
  expect(human.stdout).toMatch(/^PITR CRITICAL - source unreachable/);
});

test('archiver stopped: degraded, broken past --critical-stopped; slot lag past --critical-slot-lag broken; slot dropped: broken', async () => {
  expect(await archiver?.stop()).toBe(0);
  archiver = undefined;
  await waitSlotActive(false);
  const stopped = await status();
  expect(stopped.code).toBe(1);
  expect(stopped.report.archiver).toBe('stopped');
  expect(stopped.report.slot.active).toBe(false);
  expect(stopped.report.reasons).toEqual([{ severity: 'warning', message: 'archiver stopped (slot "pitr" inactive)' }]);
  const notLong = await status(['--critical-stopped', '1d']);
  expect(notLong.code).toBe(1);
  expect(notLong.report.reasons).toEqual([{ severity: 'warning', message: 'archiver stopped (slot "pitr" inactive)' }]);
  const long = await status(['--critical-stopped', '1ms']);
  expect(long.code).toBe(2);
  expect(long.report.health).toBe('broken');
  expect(long.report.reasons).toEqual([
    {
      severity: 'critical',
      message: expect.stringMatching(/^archiver stopped \(slot "pitr" inactive\) for \S+ at least, longer than --critical-stopped 1ms$/) as string,
    },
  ]);

  // WAL written while nobody consumes the slot is slot lag
  await fx.cluster.psql("INSERT INTO t SELECT g, 'y' FROM generate_series(2000, 2100) g");
  const lagging = await status(['--max-slot-lag', '1']);
  expect(lagging.code).toBe(1);
  expect(lagging.report.slot.lagBytes).toBeGreaterThan(1);
  expect(lagging.report.reasons).toEqual(
    expect.arrayContaining([
      { severity: 'warning', message: expect.stringMatching(/^slot "pitr" lags \d+ bytes behind, more than --max-slot-lag 1 bytes/) as string },
    ]),
  );
  const slotWarned = await status(['--max-slot-lag', '1', '--critical-slot-lag', '1TB']);
  expect(slotWarned.code).toBe(1);
  expect(slotWarned.report.reasons.map((r) => r.severity)).toEqual(['warning', 'warning']);
  const slotCritical = await status(['--max-slot-lag', '1', '--critical-slot-lag', '1']);
  expect(slotCritical.code).toBe(2);
  expect(slotCritical.report.reasons).toEqual([
    { severity: 'critical', message: expect.stringMatching(/^slot "pitr" lags \d+ bytes behind, more than --critical-slot-lag 1 bytes$/) as string },
    { severity: 'warning', message: 'archiver stopped (slot "pitr" inactive)' },
  ]);

  await fx.cluster.query("SELECT pg_drop_replication_slot('pitr')");
  const dropped = await status();
  expect(dropped.code).toBe(2);
  expect(dropped.report.health).toBe('broken');
  expect(dropped.report.slot.exists).toBe(false);
  expect(dropped.report.reasons).toEqual([{ severity: 'critical', message: expect.stringContaining('replication slot "pitr" is missing') as string }]);
});
