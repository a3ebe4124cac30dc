import { ArchiveFixture } from './harness/archive-fixture';
import { HAS_SCRIPT, runPitr, runPitrOnTerminal } from './harness/pitr-process';

/**
 * Long backups and restores show one progress line, redrawn with a carriage return, when stderr is a
 * terminal, even at --log-level warn; nothing more than the log when it is not.
 */
jest.setTimeout(120_000);
const onTerminal = HAS_SCRIPT ? test : test.skip;

let fx: ArchiveFixture;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;");
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  const quiet = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn'], { CI: '' });
  expect(quiet.code).toBe(0);
  // not a terminal: the summary on stdout, nothing on stderr
  expect(quiet.stderr).toBe('');
  expect(quiet.stdout).toMatch(/^backup \S+ complete: /);
  await fx.cluster.psql("INSERT INTO items SELECT g, 'later' FROM generate_series(2001, 2100) g;");
  // restores go to here, before the backup the terminal test takes, so they replay segments
  expect((await runPitr(['mark', 'after-load', '--source', fx.source])).code).toBe(0);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
});
afterAll(async () => {
  await fx.destroy();
});

onTerminal('backup on a terminal at --log-level warn: one progress line, redrawn in place, ended once', async () => {
  const run = await runPitrOnTerminal(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn']);
  expect(run.code).toBe(0);
  expect(run.terminal).toMatch(/\rbackup \[[#-]{30}\] 0\/1 tables /);
  // the last redraw is the finished job: a full bar and the time it took
  expect(run.terminal).toMatch(/\rbackup \[#{30}\] 1\/1 tables .* in \d+\.\ds +\r?\n/);
  // the line is ended once, after the last redraw; no log lines at warn
  expect(
    run.terminal
      .replace(/\r\n/g, '\n')
      .split('\n')
      .filter((l) => l.trim() !== ''),
  ).toEqual([expect.stringMatching(/^\rbackup \[/)]);
  expect(run.stdout).toMatch(/^backup \S+ complete: /);
});

onTerminal('restore on a terminal at --log-level warn: a load line and a replay line', async () => {
  const run = await runPitrOnTerminal([
    'restore',
    '--repo',
    fx.repoDir,
    '--target',
    fx.cluster.url('on_terminal'),
    '--to',
    'mark:after-load',
    '--log-level',
    'warn',
  ]);
  expect(run.code).toBe(0);
  expect(run.terminal).toMatch(/\rload \[[#-]{30}\] 1\/1 tables /);
  expect(run.terminal).toMatch(/\rreplay \[[#-]{30}\] \d+\/\d+ segments /);
  expect(run.stdout).toMatch(/^restored "on_terminal" to /);
});

test('backup and restore with stderr not a terminal at --log-level warn: nothing on stderr', async () => {
  const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn'], { CI: '' });
  expect(backup.code).toBe(0);
  expect(backup.stderr).toBe('');
  expect(backup.stdout).not.toContain('\r');
  const run = await runPitr(['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('no_terminal'), '--to', 'mark:after-load', '--log-level', 'warn'], {
    CI: '',
  });
  expect(run.code).toBe(0);
  expect(run.stderr).toBe('');
  expect(run.stdout).not.toContain('\r');
});
