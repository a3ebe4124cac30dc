/**
 * Backup benchmark against pg_dump on the same pgbench database in the same run: backup wall time
 * (`pitr backup` vs `pg_dump -Fd -j N`), stored size, and restore time (the backup loaded into an
 * empty database over N sessions as `pitr restore --jobs N` loads it vs `pg_restore -j N`), with row counts of both restores checked against the source.
 * CPU seconds are shown per side: client (pitr / pg_dump / pg_restore processes) and server (every
 * PostgreSQL process of the cluster), to tell where the time goes.
 *
 * Three rounds (BENCH_RUNS), each side by side; best and worst ratios are printed with the goals. Then
 * the codecs a chunk could use are compared on the largest table's data (the measurement behind Brotli
 * quality 1).
 *
 *   npm run bench:backup                                  # pgbench scale 50 (~750 MB), --jobs 2
 *   BENCH_SCALE=10 BENCH_JOBS=4 npm run bench:backup
 *   BENCH_CHUNK_SIZES=64MB,128MB npm run bench:backup     # extra `pitr backup` runs, time and size only
 *
 * BENCH_CHUNK_SIZE sets --chunk-size of the main run (default: pitr's own default); BENCH_CHUNK_SIZES
 * (default none) adds backup-only runs with other chunk sizes.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { compressFrameSync, decompressFrameSync } from 'lz4-napi';
import { Repository } from '../src/archive/repository';
import { LocalStorage } from '../src/storage/local/local-storage';
import { loadBackup } from '../test/harness/backup-loader';
import { partBytes, readBackupManifest } from '../src/restore/load-backup';
import { PgCluster } from '../test/harness/pg-cluster';
import { TICKS, procTicks, samplePeakRss, serverCpu } from './bench-util';

const execFileAsync = promisify(execFile);
const SCALE = Number(process.env.BENCH_SCALE ?? 50);
const JOBS = Number(process.env.BENCH_JOBS ?? 2);
const CHUNK_SIZE = process.env.BENCH_CHUNK_SIZE ?? '';
const EXTRA_CHUNK_SIZES = (process.env.BENCH_CHUNK_SIZES ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const BIN = path.resolve(__dirname, '../../bin/pitr.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const CODEC_SAMPLE_BYTES = 64 << 20;
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

/**
 * The measurement behind the chunks' codec: the first 64 MB of the largest table's COPY text (from the
 * backup just taken), compressed in 8 MiB pieces by LZ4 (what chunks of format-1 backups use), gzip
 * (pg_dump's) and Brotli (quality 1 is what chunks use),
 * each on one thread: ratio and speed both ways.
 */
async function compareCodecs(repo: Repository, id: string): Promise<void> {
  const manifest = await readBackupManifest(repo, id);
  const table = [...manifest.tables].sort((a, b) => b.rawBytes - a.rawBytes)[0];
  if (!table) return;
  const pieces: Buffer[] = [];
  let total = 0;
  for (const chunk of table.chunks) {
    for await (const bytes of partBytes(repo, manifest, chunk)) {
      pieces.push(Buffer.from(bytes));
      total += bytes.length;
      if (total >= CODEC_SAMPLE_BYTES) break;
    }
    if (total >= CODEC_SAMPLE_BYTES) break;
  }
  const sample = Buffer.concat(pieces).subarray(0, CODEC_SAMPLE_BYTES);
  const brotli = (quality: number) => (b: Buffer) =>
    zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: quality, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length } });
  const codecs: [string, (b: Buffer) => Buffer, (b: Buffer) => Buffer][] = [
    ['lz4 frame (old)', (b) => compressFrameSync(b), (b) => decompressFrameSync(b)],
    ['gzip -1', (b) => zlib.gzipSync(b, { level: 1 }), zlib.gunzipSync],
    ['gzip -6 (pg_dump)', (b) => zlib.gzipSync(b, { level: 6 }), zlib.gunzipSync],
    ['brotli q1 (pitr)', brotli(1), zlib.brotliDecompressSync],
    ['brotli q3', brotli(3), zlib.brotliDecompressSync],
    ['brotli q5', brotli(5), zlib.brotliDecompressSync],
  ];
  const piece = 8 << 20;
  const parts: Buffer[] = [];
  for (let at = 0; at < sample.length; at += piece) parts.push(sample.subarray(at, at + piece));
  console.log(`codecs on ${mb(sample.length)} of ${table.schema}.${table.name} COPY text (one thread each):`);
  for (const [name, compress, decompress] of codecs) {
    let started = process.hrtime.bigint();
    const packed = parts.map(compress);
    const packSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    started = process.hrtime.bigint();
    for (const p of packed) decompress(p);
    const unpackSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const size = packed.reduce((n, p) => n + p.length, 0);
    console.log(
      `  ${name.padEnd(18)} ratio ${(sample.length / size).toFixed(1).padStart(5)}  compress ${(sample.length / 1e6 / packSeconds).toFixed(0).padStart(5)} MB/s  decompress ${(sample.length / 1e6 / unpackSeconds).toFixed(0).padStart(5)} MB/s`,
    );
  }
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

    // RUNS rounds: backup (pitr first, then pg_dump: the data is in the page cache for both), then each
    // loaded into its own empty database; best and worst of the rounds are printed
    const rounds: { backup: number; dump: number; backupBytes: number; dumpBytes: number; load: number; restore: number }[] = [];
    const repository = new Repository(new LocalStorage(repo));
    let firstBackup = '';
    for (let round = 0; round < RUNS; round++) {
      const dumpRoundDir = `${dumpDir}-${round}`;
      const backup = await measure(cluster, () => pitrBackup(cluster, url, repo, CHUNK_SIZE));
      const dump = await measure(cluster, () => run(path.join(cluster.binDir, 'pg_dump'), ['-Fd', '-j', String(JOBS), '-f', dumpRoundDir, '-d', url]));
      const backupBytes = await duBytes(path.join(repo, 'backups', backup.result.id));
      const dumpBytes = await duBytes(dumpRoundDir);
      await cluster.query(`CREATE DATABASE restored_pitr_${round}`);
      await cluster.query(`CREATE DATABASE restored_pg_dump_${round}`);
      const load = await measure(cluster, () => loadBackup(repository, backup.result.id, cluster.url(`restored_pitr_${round}`), JOBS));
      const restore = await measure(cluster, () =>
        run(path.join(cluster.binDir, 'pg_restore'), ['-j', String(JOBS), '-d', cluster.url(`restored_pg_dump_${round}`), dumpRoundDir]),
      );
      console.log(
        `round ${round + 1}: pitr backup ${backup.seconds.toFixed(2)} s, ${mb(backupBytes)} (${backup.result.chunks} chunks, ${cpu(backup, 'pitr')}); ` +
          `pg_dump -Fd -j ${JOBS} ${dump.seconds.toFixed(2)} s, ${mb(dumpBytes)} (${cpu(dump, 'pg_dump')}); ` +
          `load ${load.seconds.toFixed(2)} s (${cpu(load, 'tools')}); pg_restore -j ${JOBS} ${restore.seconds.toFixed(2)} s (${cpu(restore, 'pg_restore')})`,
      );
      rounds.push({ backup: backup.seconds, dump: dump.seconds, backupBytes, dumpBytes, load: load.seconds, restore: restore.seconds });
      if (round === 0) firstBackup = backup.result.id;
    }
    const ratios = rounds.map((r) => ({ time: r.backup / r.dump, size: r.backupBytes / r.dumpBytes, load: r.load / r.restore }));
    const range = (xs: number[]): string => `best ${Math.min(...xs).toFixed(2)}, worst ${Math.max(...xs).toFixed(2)}`;
    console.log(`ratios over ${RUNS} rounds (pitr / PostgreSQL's tools, each round measured side by side):`);
    console.log(`  backup time, pitr backup / pg_dump -Fd -j ${JOBS}: ${range(ratios.map((r) => r.time))} (goal <= 0.8)`);
    console.log(`  stored size, pitr backup / pg_dump directory: ${range(ratios.map((r) => r.size))} (goal <= 1.0)`);
    console.log(`  load time, pitr / pg_restore -j ${JOBS}: ${range(ratios.map((r) => r.load))} (goal <= 0.8)`);

    const source = await rowCounts(cluster, 'bench', tables);
    const fromPitr = await rowCounts(cluster, 'restored_pitr_0', tables);
    const fromDump = await rowCounts(cluster, 'restored_pg_dump_0', tables);
    let same = true;
    console.log('row counts (source / pitr / pg_restore):');
    for (const t of tables) {
      const ok = fromPitr[t] === source[t] && fromDump[t] === source[t];
      same &&= ok;
      console.log(`  ${t}: ${source[t]} / ${fromPitr[t]} / ${fromDump[t]}${ok ? '' : '  MISMATCH'}`);
    }
    console.log(`  ${same ? 'all equal' : 'MISMATCH'}`);
    if (!same) process.exitCode = 1;
    await compareCodecs(repository, firstBackup);

    if (EXTRA_CHUNK_SIZES.length > 0) {
      console.log('other chunk sizes (backup only):');
      for (const chunkSize of EXTRA_CHUNK_SIZES) {
        const extra = await measure(cluster, () => pitrBackup(cluster, url, repo, chunkSize));
        const bytes = await duBytes(path.join(repo, 'backups', extra.result.id));
        console.log(
          `  pitr backup --chunk-size ${chunkSize} (${extra.result.chunks} chunks): ${extra.seconds.toFixed(2)} s, ${mb(bytes)}, ratio to the fastest pg_dump ${(extra.seconds / Math.min(...rounds.map((r) => r.dump))).toFixed(2)} (${cpu(extra, 'pitr')})`,
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
