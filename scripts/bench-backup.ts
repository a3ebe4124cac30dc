/**
 * Backup benchmark against pg_dump on the same pgbench database in the same run: backup wall time
 * (`pitr backup` vs `pg_dump -Fd -j N`), stored size, and restore time (the backup loaded into an
 * empty database vs `pg_restore -j N`), with row counts of both restores checked against the source.
 * CPU seconds are shown per side: client (pitr / pg_dump / pg_restore processes) and server (every
 * PostgreSQL process of the cluster), to tell where the time goes.
 *
 *   npm run bench:backup                                  # pgbench scale 50 (~750 MB), --jobs 2
 *   BENCH_SCALE=10 BENCH_JOBS=4 npm run bench:backup
 *   BENCH_CHUNK_SIZES=64MB,128MB npm run bench:backup     # extra `pitr backup` runs, time and size only
 *
 * BENCH_CHUNK_SIZE sets --chunk-size of the main run (default: pitr's own default); BENCH_CHUNK_SIZES
 * (default 64MB; "" for none) adds backup-only runs with other chunk sizes.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Repository } from '../src/archive/repository';
import { LocalStorage } from '../src/storage/local/local-storage';
import { loadBackup } from '../test/harness/backup-loader';
import { PgCluster } from '../test/harness/pg-cluster';
import { TICKS, procTicks, samplePeakRss, serverCpu } from './bench-util';

const execFileAsync = promisify(execFile);
const SCALE = Number(process.env.BENCH_SCALE ?? 50);
const JOBS = Number(process.env.BENCH_JOBS ?? 2);
const CHUNK_SIZE = process.env.BENCH_CHUNK_SIZE ?? '';
const EXTRA_CHUNK_SIZES = (process.env.BENCH_CHUNK_SIZES ?? '64MB')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const BIN = path.resolve(__dirname, '../../bin/pitr.js');
/** CPU seconds of this process and its reaped children (the tools we ran and their own children). */
function clientCpu(): number {
  return procTicks('self', true) / TICKS;
}

interface Measured<T> {
  seconds: number;
  clientCpu: number;
  serverCpu: number;
  result: T;
}

async function measure<T>(cluster: PgCluster, fn: () => Promise<T>): Promise<Measured<T>> {
  const client0 = clientCpu();
  const server0 = serverCpu(cluster);
  const started = process.hrtime.bigint();
  const result = await fn();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, clientCpu: clientCpu() - client0, serverCpu: serverCpu(cluster) - server0, result };
}

/** Peak resident memory (VmHWM, MB) of the last process started by `run`. */
let lastPeakMb = 0;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const rss = samplePeakRss(child.pid);
    child.on('exit', () => (lastPeakMb = rss.stop()));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`${path.basename(cmd)} ${args.slice(0, 2).join(' ')} exited with ${code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`));
    });
  });
}

async function duBytes(dir: string): Promise<number> {
  const { stdout } = await execFileAsync('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MB`;
const cpu = (m: Measured<unknown>, client: string): string => {
  const peak = (m.result as { peakMb?: number } | undefined)?.peakMb;
  return `cpu: ${client} ${m.clientCpu.toFixed(1)} s, server ${m.serverCpu.toFixed(1)} s${peak !== undefined ? `, peak RSS ${peak.toFixed(0)} MB` : ''}`;
};

async function pitrBackup(
  cluster: PgCluster,
  url: string,
  repo: string,
  chunkSize: string,
): Promise<{ id: string; chunks: number; seconds: number; peakMb: number }> {
  const args = [BIN, 'backup', '--source', url, '--repo', repo, '--jobs', String(JOBS), '--log-level', 'warn', '--json'];
  if (chunkSize) args.push('--chunk-size', chunkSize);
  const out = await run(process.execPath, args);
  return { ...(JSON.parse(out) as { id: string; chunks: number; seconds: number }), peakMb: lastPeakMb };
}

async function rowCounts(cluster: PgCluster, database: string, tables: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const t of tables) {
    const [row] = await cluster.query<{ n: string }>(`SELECT count(*)::text AS n FROM public.${t}`, [], database);
    counts[t] = Number(row?.n);
  }
  return counts;
}

async function main(): Promise<void> {
  const cluster = await PgCluster.start({
    settings: { max_wal_size: "'16GB'", checkpoint_timeout: "'30min'", shared_buffers: "'256MB'", maintenance_work_mem: "'256MB'" },
  });
  const work = mkdtempSync(path.join(tmpdir(), 'pitr-bench-backup-'));
  const repo = path.join(work, 'repo');
  const dumpDir = path.join(work, 'pg_dump');
  const url = cluster.url('bench');
  try {
    await cluster.query('CREATE DATABASE bench');
    console.log(`pgbench -i -s ${SCALE}...`);
    await run(path.join(cluster.binDir, 'pgbench'), [
      '-i',
      '-q',
      '-s',
      String(SCALE),
      '-h',
      '127.0.0.1',
      '-p',
      String(cluster.port),
      '-U',
      'postgres',
      'bench',
    ]);
    // pgbench_history has no primary key: pitr init requires a replica identity
    await cluster.query('ALTER TABLE pgbench_history REPLICA IDENTITY FULL', [], 'bench');
    await cluster.query('VACUUM ANALYZE', [], 'bench');
    await cluster.query('CHECKPOINT');
    await run(process.execPath, [BIN, 'init', '--source', url, '--repo', repo, '--log-level', 'warn']);
    const [size] = await cluster.query<{ db: string; accounts: string }>(
      "SELECT pg_database_size('bench')::text AS db, pg_total_relation_size('pgbench_accounts')::text AS accounts",
      [],
      'bench',
    );
    const tables = (await cluster.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", [], 'bench')).map(
      (r) => r.t,
    );
    console.log(
      `database: scale ${SCALE}, ${mb(Number(size?.db))} on disk (pgbench_accounts with index ${mb(Number(size?.accounts))}), ${tables.length} tables; --jobs ${JOBS}`,
    );

    // backup: pitr first, then pg_dump (the data is in the page cache for both)
    const backup = await measure(cluster, () => pitrBackup(cluster, url, repo, CHUNK_SIZE));
    const dump = await measure(cluster, () => run(path.join(cluster.binDir, 'pg_dump'), ['-Fd', '-j', String(JOBS), '-f', dumpDir, '-d', url]));
    const backupDir = path.join(repo, 'backups', backup.result.id);
    const backupBytes = await duBytes(backupDir);
    const dumpBytes = await duBytes(dumpDir);
    console.log('backup:');
    console.log(
      `  pitr backup (--chunk-size ${CHUNK_SIZE || 'default'}, ${backup.result.chunks} chunks, LZ4): ${backup.seconds.toFixed(2)} s, ${mb(backupBytes)} (${cpu(backup, 'pitr')})`,
    );
    console.log(`  pg_dump -Fd -j ${JOBS} (gzip): ${dump.seconds.toFixed(2)} s, ${mb(dumpBytes)} (${cpu(dump, 'pg_dump')})`);
    console.log(`  ratio pitr/pg_dump time: ${(backup.seconds / dump.seconds).toFixed(2)} (target <= 1.0)`);
    console.log(`  ratio pitr/pg_dump size: ${(backupBytes / dumpBytes).toFixed(2)} (target <= 1.2)`);

    // restore: each into its own empty database
    await cluster.query('CREATE DATABASE restored_pitr');
    await cluster.query('CREATE DATABASE restored_pg_dump');
    const repository = new Repository(new LocalStorage(repo));
    const load = await measure(cluster, () => loadBackup(repository, backup.result.id, cluster.url('restored_pitr')));
    const restore = await measure(cluster, () =>
      run(path.join(cluster.binDir, 'pg_restore'), ['-j', String(JOBS), '-d', cluster.url('restored_pg_dump'), dumpDir]),
    );
    console.log('restore:');
    console.log(`  pitr backup loaded (test/harness/backup-loader, one session): ${load.seconds.toFixed(2)} s (${cpu(load, 'tools')})`);
    console.log(`  pg_restore -j ${JOBS}: ${restore.seconds.toFixed(2)} s (${cpu(restore, 'pg_restore')})`);
    console.log(`  ratio pitr/pg_restore time: ${(load.seconds / restore.seconds).toFixed(2)}`);

    const source = await rowCounts(cluster, 'bench', tables);
    const fromPitr = await rowCounts(cluster, 'restored_pitr', tables);
    const fromDump = await rowCounts(cluster, 'restored_pg_dump', tables);
    let same = true;
    console.log('row counts (source / pitr / pg_restore):');
    for (const t of tables) {
      const ok = fromPitr[t] === source[t] && fromDump[t] === source[t];
      same &&= ok;
      console.log(`  ${t}: ${source[t]} / ${fromPitr[t]} / ${fromDump[t]}${ok ? '' : '  MISMATCH'}`);
    }
    console.log(`  ${same ? 'all equal' : 'MISMATCH'}`);
    if (!same) process.exitCode = 1;

    if (EXTRA_CHUNK_SIZES.length > 0) {
      console.log('other chunk sizes (backup only):');
      for (const chunkSize of EXTRA_CHUNK_SIZES) {
        const extra = await measure(cluster, () => pitrBackup(cluster, url, repo, chunkSize));
        const bytes = await duBytes(path.join(repo, 'backups', extra.result.id));
        console.log(
          `  pitr backup --chunk-size ${chunkSize} (${extra.result.chunks} chunks): ${extra.seconds.toFixed(2)} s, ${mb(bytes)}, ratio to pg_dump ${(extra.seconds / dump.seconds).toFixed(2)} (${cpu(extra, 'pitr')})`,
        );
      }
    }
  } finally {
    await cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
