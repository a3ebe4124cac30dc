/**
 * Archive throughput into one repository against two synchronous ones, on the same backlog in the same
 * run: two slots see the same changes, one archiver drains each (one after the other, so they do not
 * share the machine). Prints both times and their ratio.
 *
 *   npm run bench:archive-repositories                 # 500k-change backlog
 *   BENCH_CHANGES=100000 npm run bench:archive-repositories
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PgCluster } from '../test/harness/pg-cluster';
import { PITR_BIN, samplePeakRss, waitSlot } from './bench-util';

const execFileAsync = promisify(execFile);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 500_000);

async function archiveUntil(cluster: PgCluster, slot: string, repos: string[], lsn: string): Promise<{ seconds: number; peakMb: number }> {
  const started = process.hrtime.bigint();
  const args = [PITR_BIN, 'archive', '--source', cluster.url(), '--slot', slot, ...repos.flatMap((r) => ['--repo', r]), '--log-level', 'warn'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const rss = samplePeakRss(child.pid, 50);
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const reached = await Promise.race([waitSlot(cluster, slot, lsn).then(() => true), exited.then(() => false)]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (!reached) throw new Error(`pitr archive exited with ${await exited} before slot ${slot} reached ${lsn}`);
  child.kill('SIGTERM');
  if ((await exited) !== 0) throw new Error('pitr archive did not stop cleanly');
  return { seconds, peakMb };
}

async function main(): Promise<void> {
  const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", logical_decoding_work_mem: "'64MB'" } });
  const dirs = ['one', 'two-a', 'two-b'].map((n) => mkdtempSync(path.join(tmpdir(), `pitr-bench-${n}-`)));
  const [one, twoA, twoB] = dirs as [string, string, string];
  try {
    await cluster.query('CREATE TABLE bench (id bigint PRIMARY KEY, n int, v text)');
    const init = (slot: string, repo: string) =>
      execFileAsync(process.execPath, [PITR_BIN, 'init', '--source', cluster.url(), '--slot', slot, '--repo', repo, '--log-level', 'warn']);
    await init('one', one);
    await init('two', twoA);
    const perTxn = 1000;
    const txns = Math.ceil(CHANGES / perTxn);
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
    const end = ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0] as { lsn: string }).lsn;
    const single = await archiveUntil(cluster, 'one', [one], end);
    const double = await archiveUntil(cluster, 'two', [twoA, twoB], end);
    const changes = txns * perTxn;
    const line = (what: string, r: { seconds: number; peakMb: number }): string =>
      `  ${what}: ${r.seconds.toFixed(2)} s, ${Math.round(changes / r.seconds)} changes/s, peak RSS ${r.peakMb.toFixed(0)} MB`;
    console.log(`backlog: ${changes} changes`);
    console.log(line('one repository', single));
    console.log(line('two synchronous repositories', double));
    console.log(`  ratio two/one time: ${(double.seconds / single.seconds).toFixed(2)}`);
  } finally {
    await cluster.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

void main();
