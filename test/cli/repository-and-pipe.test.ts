/**
 * The first mistakes a new user makes with the repository and with pipes: a --repo that names no
 * repository (a typo) is refused by the commands that read one, instead of showing an empty archive;
 * a command that writes says where when it falls back to ./pitr-repo; a reader that closes stdout
 * early (`pitr log | head -n 2`) ends the command quietly with status 0.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type RunResult } from '../harness/pitr-process';

jest.setTimeout(60_000);

const BIN = path.resolve(__dirname, '../../bin/pitr.js');
let fx: ArchiveFixture;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'pitr-first-hour-'));
  fx = await ArchiveFixture.create();
  await fx.cluster.psql('CREATE TABLE orders (id int PRIMARY KEY, what text)');
  expect((await fx.init(['--log-level', 'warn'])).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  for (let i = 1; i <= 20; i++) await fx.cluster.query('INSERT INTO orders VALUES ($1, $2)', [i, `order ${i}`]);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
});

afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await fx?.destroy();
});

/** Runs a program in `cwd` and keeps what it prints. */
function runProgram(program: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const runIn = (cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> => runProgram(process.execPath, [BIN, ...args], cwd, env);

/** Runs the CLI with its stdout closed by the reader before it writes anything (a `| head` that is done). */
function runWithClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test('list, log, undo, verify and restore refuse a --repo that holds no repository (exit 5), naming it', async () => {
  const empty = path.join(scratch, 'empty');
  mkdirSync(empty);
  for (const repo of [path.join(scratch, 'no-such-dir'), empty]) {
    const commands = [
      ['list', '--repo', repo],
      ['log', '--repo', repo],
      ['undo', '--repo', repo, '--xid', '1000'],
      ['verify', '--repo', repo],
      ['restore', '--repo', repo, '--target', fx.cluster.url('never_made'), '--to', 'latest'],
    ];
    for (const args of commands) {
      const result = await runPitr(args);
      expect({ args, code: result.code, stdout: result.stdout, stderr: result.stderr }).toEqual({
        args,
        code: 5,
        stdout: '',
        stderr: `pitr: error: no repository at ${repo} (it holds no repository.json)\nhint: check --repo or PITR_REPO; "pitr init" or "pitr backup" creates a repository\n`,
      });
    }
  }
  const json = await runPitr(['list', '--repo', empty, '--json']);
  expect(JSON.parse(json.stdout)).toMatchObject({ error: { kind: 'Repository', code: 5 } });
  expect(existsSync(path.join(scratch, 'no-such-dir'))).toBe(false);
  // the real repository still lists
  const listed = await runPitr(['list', '--repo', fx.repoDir]);
  expect(listed.code).toBe(0);
});

test('backup without --repo or PITR_REPO says on stderr which repository it writes', async () => {
  const cwd = path.join(scratch, 'workdir');
  mkdirSync(cwd);
  const result = await runIn(cwd, ['backup', '--source', fx.source, '--log-level', 'warn'], { PITR_REPO: '' });
  expect(result.code).toBe(0);
  expect(result.stderr).toBe(`pitr: no --repo or PITR_REPO given: using the repository at ${path.join(cwd, 'pitr-repo')}\n`);
  expect(existsSync(path.join(cwd, 'pitr-repo', 'repository.json'))).toBe(true);
  // named by a flag or the environment: nothing extra
  const named = await runIn(cwd, ['list', '--log-level', 'warn'], { PITR_REPO: path.join(cwd, 'pitr-repo') });
  expect({ code: named.code, stderr: named.stderr }).toEqual({ code: 0, stderr: '' });
});

test('a closed stdout pipe ends the command quietly with status 0', async () => {
  for (const args of [['log', '--repo', fx.repoDir, '--rows'], ['log', '--repo', fx.repoDir, '--json'], ['list', '--repo', fx.repoDir], ['--help']]) {
    const result = await runWithClosedStdout(args);
    expect({ args, ...result }).toEqual({ args, code: 0, stderr: '' });
  }
  // as in a shell: pitr log | head -n 2
  const shell = await runProgram(
    'bash',
    ['-c', `"${process.execPath}" "${BIN}" log --repo "${fx.repoDir}" --rows | head -n 2; echo "status \${PIPESTATUS[0]}" >&2`],
    scratch,
  );
  expect(shell.stdout.split('\n')).toHaveLength(3);
  expect(shell.stderr).toBe('status 0\n');
});
