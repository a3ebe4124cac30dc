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

/**
 * Runs `pitr archive` into `repo` (or every repository of a list, as repeated --repo) until `slot` has
 * confirmed `lsn` (`extraArgs` given to it too); returns seconds and the peak RSS (VmHWM) in MB.
 */
export async function archiveUntil(
  cluster: PgCluster,
  repo: string | string[],
  lsn: string,
  slot = 'pitr',
  extraArgs: string[] = [],
): Promise<{ seconds: number; peakMb: number }> {
  const repos = typeof repo === 'string' ? [repo] : repo;
  const started = process.hrtime.bigint();
  const args = [PITR_BIN, 'archive', '--source', cluster.url(), '--slot', slot, ...repos.flatMap((r) => ['--repo', r]), ...extraArgs, '--log-level', 'warn'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const rss = samplePeakRss(child.pid, 50);
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const reached = await Promise.race([waitSlot(cluster, slot, lsn).then(() => true), exited.then(() => false)]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (!reached) throw new Error(`pitr archive exited with ${await exited} before slot ${slot} reached ${lsn}`);
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`pitr archive exited with ${code} after SIGTERM`);
  return { seconds, peakMb };
}

/**
 * The archive benchmarks' backlog, in table `bench (id bigint PRIMARY KEY, n int, v text)`: transactions
 * of 1,000 row changes (500 inserts, 250 updates, 250 deletes), enough of them for `changes`. Returns
 * the changes made and the WAL position after the last.
 */
export async function buildBacklog(cluster: PgCluster, changes: number): Promise<{ changes: number; txns: number; end: string }> {
  const perTxn = 1000;
  const txns = Math.ceil(changes / perTxn);
  console.log(`building a backlog of ${txns * perTxn} row changes in ${txns} transactions...`);
  await cluster.query(`CREATE PROCEDURE load(txns int) LANGUAGE plpgsql AS $$
    DECLARE base bigint;
    BEGIN
      FOR t IN 0 .. txns - 1 LOOP
        base := t * 500;
        INSERT INTO bench SELECT base + g, g, md5(g::text) FROM generate_series(1, 500) g;
        UPDATE bench SET n = n + 1 WHERE id > base AND id <= base + 250;
        DELETE FROM bench WHERE id > base + 250 AND id <= base + 500;
        COMMIT;
      END LOOP;
    END $$`);
  await cluster.query('CALL load($1)', [txns]);
  const [row] = await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return { changes: txns * perTxn, txns, end: (row as { lsn: string }).lsn };
}

/** Row count and md5 of table `bench` in `database`: a restore equals the source when these do. */
export async function benchFingerprint(cluster: PgCluster, database: string): Promise<string> {
  const [row] = await cluster.query<{ n: string; md5: string | null }>(
    `SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY id)) AS md5 FROM public.bench t`,
    [],
    database,
  );
  return `${row?.n} rows, md5 ${row?.md5 ?? '-'}`;
}
