/**
 * Archive benchmark: throughput against pg_recvlogical (the server's decoding ceiling, output thrown
 * away) on the same backlog in the same run, and peak memory on one very large transaction.
 *
 *   npm run bench:archive                       # 1M-change backlog, 10M-row transaction
 *   BENCH_CHANGES=200000 BENCH_BIG_TXN=1000000 npm run bench:archive
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PgCluster } from '../test/harness/pg-cluster';
import { PITR_BIN, archiveUntil, buildBacklog } from './bench-util';

const execFileAsync = promisify(execFile);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 1_000_000);
const BIG_TXN = Number(process.env.BENCH_BIG_TXN ?? 10_000_000);

async function currentLsn(cluster: PgCluster): Promise<string> {
  return ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0] as { lsn: string }).lsn;
}

async function recvlogicalUntil(cluster: PgCluster, slot: string, lsn: string): Promise<number> {
  const started = process.hrtime.bigint();
  await execFileAsync(path.join(cluster.binDir, 'pg_recvlogical'), [
    '-d',
    cluster.url(),
    '--slot',
    slot,
    '--start',
    '--no-loop',
    '-E',
    lsn,
    '-o',
    'proto_version=1',
    '-o',
    'publication_names=pitr',
    '-f',
    '/dev/null',
  ]);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function main(): Promise<void> {
  const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", logical_decoding_work_mem: "'64MB'" } });
  const repo = mkdtempSync(path.join(tmpdir(), 'pitr-bench-repo-'));
  try {
    await cluster.query('CREATE TABLE bench (id bigint PRIMARY KEY, n int, v text)');
    await execFileAsync(process.execPath, [PITR_BIN, 'init', '--source', cluster.url(), '--repo', repo, '--log-level', 'warn']);
    await cluster.query("SELECT pg_create_logical_replication_slot('recv', 'pgoutput')");

    const { changes, end: backlogEnd } = await buildBacklog(cluster, CHANGES);

    const recvSeconds = await recvlogicalUntil(cluster, 'recv', backlogEnd);
    const archive = await archiveUntil(cluster, repo, backlogEnd);
    console.log(`backlog: ${changes} changes`);
    console.log(`  pg_recvlogical (pgoutput to /dev/null): ${recvSeconds.toFixed(2)} s, ${Math.round(changes / recvSeconds)} changes/s`);
    console.log(
      `  pitr archive (stored, checksummed, LZ4): ${archive.seconds.toFixed(2)} s, ${Math.round(changes / archive.seconds)} changes/s, peak RSS ${archive.peakMb.toFixed(0)} MB`,
    );
    console.log(`  ratio pitr/pg_recvlogical time: ${(archive.seconds / recvSeconds).toFixed(2)}`);
    await cluster.query("SELECT pg_drop_replication_slot('recv')");

    console.log(`one transaction of ${BIG_TXN} rows...`);
    await cluster.query('CREATE TABLE big (id bigint PRIMARY KEY, v text)');
    await cluster.query("INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, $1) g", [BIG_TXN]);
    const bigEnd = await currentLsn(cluster);
    const big = await archiveUntil(cluster, repo, bigEnd);
    console.log(
      `  pitr archive: ${big.seconds.toFixed(2)} s, ${Math.round(BIG_TXN / big.seconds)} changes/s, peak RSS ${big.peakMb.toFixed(0)} MB (limit 256 MB)`,
    );
    const { stdout } = await execFileAsync('du', ['-sb', repo]);
    console.log(`  repository size: ${(Number(stdout.split('\t')[0]) / 1048576).toFixed(0)} MB`);
    if (big.peakMb > 256) process.exitCode = 1;
  } finally {
    await cluster.destroy();
    rmSync(repo, { recursive: true, force: true });
  }
}

void main();
