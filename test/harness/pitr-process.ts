import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const BIN = path.resolve(__dirname, '../../bin/pitr.js');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (npm test builds first) to completion. */
export function runPitr(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Whether `script` (util-linux) is there to give a command a pseudo-terminal. */
export const HAS_SCRIPT = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

const shellQuote = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`;

/**
 * Runs the built CLI with its stderr on a pseudo-terminal (through `script -qec`), as a person at a
 * terminal would, its stdout into a file. `terminal` is everything written to the terminal.
 */
export async function runPitrOnTerminal(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 60_000,
): Promise<{ code: number | null; terminal: string; stdout: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pitr-tty-'));
  const outFile = path.join(dir, 'stdout');
  try {
    const command = `${[process.execPath, BIN, ...args].map(shellQuote).join(' ')} >${shellQuote(outFile)}`;
    const result = await new Promise<{ code: number | null; terminal: string }>((resolve, reject) => {
      // CI unset: the progress line is drawn only outside CI
      const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, CI: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let terminal = '';
      child.stdout.on('data', (d: Buffer) => (terminal += d.toString()));
      child.stderr.on('data', (d: Buffer) => (terminal += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, terminal });
      });
    });
    return { ...result, stdout: readFileSync(outFile, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A long-running `pitr archive` whose JSON log lines are collected. */
export class PitrProcess {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[] = [];
  stderr = '';
  stdout = '';
  private readonly exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
    });
    this.child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }

  /** Waits for a log line matching `predicate`, looking at lines from index `from` on. */
  async waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 30_000, from = 0): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let seen = from;
    while (Date.now() < deadline) {
      for (; seen < this.lines.length; seen++) {
        const line = this.lines[seen] as Record<string, unknown>;
        if (predicate(line)) return line;
      }
      if (this.child.exitCode !== null) throw new Error(`pitr exited (${this.child.exitCode}) while waiting; stderr:\n${this.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for a log line; stderr tail:\n${this.stderr.slice(-3000)}`);
  }

  waitForState(state: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.waitFor((l) => l.event === 'state' && l.to === state, timeoutMs);
  }

  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    this.child.kill(signal);
    return this.exited;
  }

  wait(): Promise<number | null> {
    return this.exited;
  }
}
