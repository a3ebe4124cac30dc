import { spawn, type ChildProcess } from 'node:child_process';
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
