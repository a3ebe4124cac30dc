import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';

/** The same executable a user runs: the demo goes through the real command-line paths. */
export const PITR_BIN = path.resolve(__dirname, '../../bin/pitr.js');

export interface PitrRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The child's environment: the caller's, without PITR_* and PG* settings that would point it elsewhere. */
export function childEnvironment(base: NodeJS.ProcessEnv, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) if (!/^(PITR_|PG)/.test(name)) env[name] = value;
  return { ...env, ...extra };
}

/** A long-running pitr child (the archiver), its log in a file. */
export class PitrChild {
  readonly exited: Promise<number | null>;
  running = true;

  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) =>
      child.on('close', (code) => {
        this.running = false;
        resolve(code);
      }),
    );
  }

  /** SIGTERM: the archiver seals, stores, acknowledges and exits 0. */
  stop(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** Runs `pitr` commands as child processes of the same Node.js, killing them when the demo is aborted. */
export class PitrCli {
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  run(args: readonly string[], signal: AbortSignal): Promise<PitrRun> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(args, ['ignore', 'pipe', 'pipe']);
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const abort = (): void => void child.kill('SIGTERM');
      signal.addEventListener('abort', abort, { once: true });
      child.on('error', reject);
      child.on('close', (code) => {
        signal.removeEventListener('abort', abort);
        resolve({ code, stdout, stderr });
      });
    });
  }

  start(args: readonly string[], logFile: string): PitrChild {
    const fd = openSync(logFile, 'a');
    try {
      return new PitrChild(this.spawn(args, ['ignore', fd, fd]));
    } finally {
      closeSync(fd);
    }
  }

  /** For exit hooks: nothing asynchronous runs there any more. */
  killAll(): void {
    for (const child of this.children) child.kill('SIGKILL');
  }

  private spawn(args: readonly string[], stdio: ('ignore' | 'pipe' | number)[]): ChildProcess {
    const child = spawn(process.execPath, [PITR_BIN, ...args], { env: this.env, stdio });
    this.children.add(child);
    child.on('close', () => this.children.delete(child));
    return child;
  }
}
