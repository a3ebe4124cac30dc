/** Measurement helpers shared by the benchmarks (Linux /proc). */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { PgCluster } from '../test/harness/pg-cluster';

export const TICKS = 100; // CLK_TCK on Linux

/** Samples a process's peak resident memory (VmHWM) until `stop()`, which returns it in MB. */
export function samplePeakRss(pid: number | undefined, everyMs = 20): { stop(): number } {
  let peakKb = 0;
  const sample = (): void => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) peakKb = Math.max(peakKb, Number(match[1]));
    } catch {
      // exited
    }
  };
  const timer = setInterval(sample, everyMs);
  return {
    stop(): number {
      sample();
      clearInterval(timer);
      return peakKb / 1024;
    },
  };
}

/** Fields of /proc/<pid>/stat from #3 (state) on; undefined once the process is gone. */
function procStat(pid: number | string): ((field: number) => number) | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (i: number): number => Number(fields[i - 3]);
  } catch {
    return undefined;
  }
}

/** utime+stime (+ waited-for children) of a process, in ticks; 0 once it is gone. */
export function procTicks(pid: number | string, withChildren: boolean): number {
  const n = procStat(pid);
  if (!n) return 0;
  return n(14) + n(15) + (withChildren ? n(16) + n(17) : 0);
}

/** CPU seconds of the whole cluster so far: the postmaster, the backends it reaped, and the live ones. */
export function serverCpu(cluster: PgCluster): number {
  const postmaster = readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] as string;
  let ticks = procTicks(postmaster, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      if (ppid === postmaster) ticks += procTicks(entry, true);
    } catch {
      // exited
    }
  }
  return ticks / TICKS;
}

/** CPU seconds of the children this process has waited for (and of their own waited-for children). */
export function reapedChildrenCpu(): number {
  const n = procStat('self');
  return n ? (n(16) + n(17)) / TICKS : 0;
}

/** The built CLI the benchmarks run. */
export const PITR_BIN = path.resolve(__dirname, '../../bin/pitr.js');

/** Waits until `slot` has confirmed `lsn`. */
export async function waitSlot(cluster: PgCluster, slot: string, lsn: string): Promise<void> {
  for (;;) {
    const rows = await cluster.query<{ ok: boolean }>('SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2', [
      lsn,
      slot,
    ]);
    if (rows[0]?.ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `pitr archive` until its slot has confirmed `lsn`; returns seconds and the peak RSS (VmHWM) in MB. */
export async function archiveUntil(cluster: PgCluster, repo: string, lsn: string): Promise<{ seconds: number; peakMb: number }> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [PITR_BIN, 'archive', '--source', cluster.url(), '--repo', repo, '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const rss = samplePeakRss(child.pid, 50);
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const reached = await Promise.race([waitSlot(cluster, 'pitr', lsn).then(() => true), exited.then(() => false)]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (!reached) throw new Error(`pitr archive exited with ${await exited} before the slot reached ${lsn}`);
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`pitr archive exited with ${code} after SIGTERM`);
  return { seconds, peakMb };
}
