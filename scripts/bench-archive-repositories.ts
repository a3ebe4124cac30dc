/**
 * Several repositories, on the same backlog in the same run.
 *
 * Archive: two slots see the same changes, one archiver drains each (one after the other, so they do not
 * share the machine), into one repository and into two synchronous ones. Prints both times and their ratio.
 *
 * Restore: a third slot's archive of the same backlog, in segments of BENCH_RESTORE_SEGMENT_SIZE (default
 * 1MB, so there are segments to miss), with a base backup taken before the backlog, is copied (`pitr copy`) into a second
 * local repository and into a bucket of the test GCS server, and a third local copy loses every
 * BENCH_HOLE_EVERY-th segment's data object. `pitr restore --to latest` of it, each into a new database
 * checked against the source, (a) from the one local repository, (b) from it with a second copy given
 * after it (local, then the bucket), (c) from the bucket alone, and (d) from the copy with holes first and
 * a complete one after it, so those segments are read from the second, object by object. Prints each
 * time and its ratio to (a).
 *
 *   npm run bench:archive-repositories                 # 500k-change backlog
 *   BENCH_CHANGES=100000 BENCH_HOLE_EVERY=4 npm run bench:archive-repositories
 */
import { execFile, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FakeGcsServer } from '../test/fake-gcs/fake-gcs-server';
import { PgCluster } from '../test/harness/pg-cluster';
import { PITR_BIN, archiveUntil, benchFingerprint, buildBacklog, samplePeakRss } from './bench-util';

const execFileAsync = promisify(execFile);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 500_000);
const RESTORE_SEGMENT_SIZE = process.env.BENCH_RESTORE_SEGMENT_SIZE ?? '1MB';
const HOLE_EVERY = Number(process.env.BENCH_HOLE_EVERY ?? 3);
const BUCKET = 'bench-repositories';

async function pitr(args: string[], gcs: FakeGcsServer): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [PITR_BIN, ...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn'], { maxBuffer: 64 << 20 });
  return stdout;
}

/** `pitr restore --to latest` from `repos` into a new database of `target`: seconds and peak RSS. */
async function timedRestore(target: PgCluster, repos: string[], db: string, gcs: FakeGcsServer): Promise<{ seconds: number; peakMb: number }> {
  const started = process.hrtime.bigint();
  const args = [PITR_BIN, 'restore', ...repos.flatMap((r) => ['--repo', r]), '--target', target.url(db), '--to', 'latest', '--gcs-endpoint', gcs.url];
  const child = spawn(process.execPath, [...args, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const rss = samplePeakRss(child.pid, 20);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (code !== 0) throw new Error(`pitr restore ${repos.join(' ')} exited with ${code}: ${stderr}`);
  return { seconds, peakMb };
}

/** Removes every `every`-th segment data object of a local repository; returns how many. */
function punchHoles(repo: string, every: number): number {
  let removed = 0;
  let seen = 0;
  const root = path.join(repo, 'segments');
  const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.lz4'));
  for (const file of files.sort((x, y) => (path.basename(x) < path.basename(y) ? -1 : 1))) {
    if (++seen % every !== 0) continue;
    rmSync(path.join(root, file));
    removed++;
  }
  return removed;
}

async function main(): Promise<void> {
  const settings = { max_wal_size: "'4GB'", logical_decoding_work_mem: "'64MB'" };
  const [cluster, target] = await Promise.all([PgCluster.start({ settings }), PgCluster.start({ settings })]);
  const gcs = await FakeGcsServer.start();
  const work = mkdtempSync(path.join(tmpdir(), 'pitr-bench-repositories-'));
  const dir = (name: string): string => path.join(work, name);
  const [one, twoA, twoB, first, second, holes] = [dir('one'), dir('two-a'), dir('two-b'), dir('first'), dir('second'), dir('holes')];
  const bucket = `gs://${BUCKET}/shop`;
  try {
    await cluster.query('CREATE TABLE bench (id bigint PRIMARY KEY, n int, v text)');
    await pitr(['init', '--source', cluster.url(), '--slot', 'one', '--repo', one], gcs);
    await pitr(['init', '--source', cluster.url(), '--slot', 'two', '--repo', twoA], gcs);
    await pitr(['init', '--source', cluster.url(), '--slot', 'restore', '--repo', first], gcs);
    await pitr(['backup', '--source', cluster.url(), '--repo', first], gcs);
    const { changes, end } = await buildBacklog(cluster, CHANGES);
    const single = await archiveUntil(cluster, one, end, 'one');
    const double = await archiveUntil(cluster, [twoA, twoB], end, 'two');
    const line = (what: string, r: { seconds: number; peakMb: number }): string =>
      `  ${what}: ${r.seconds.toFixed(2)} s, ${Math.round(changes / r.seconds)} changes/s, peak RSS ${r.peakMb.toFixed(0)} MB`;
    console.log(`backlog: ${changes} changes`);
    console.log(line('one repository', single));
    console.log(line('two synchronous repositories', double));
    console.log(`  ratio two/one time: ${(double.seconds / single.seconds).toFixed(2)}`);

    await archiveUntil(cluster, first, end, 'restore', ['--segment-size', RESTORE_SEGMENT_SIZE]);
    await pitr(['copy', '--from', first, '--into', second], gcs);
    await pitr(['copy', '--from', first, '--into', bucket], gcs);
    cpSync(first, holes, { recursive: true });
    const segments = readdirSync(path.join(first, 'segments')).reduce(
      (n, g) => n + readdirSync(path.join(first, 'segments', g)).filter((f) => f.endsWith('.lz4')).length,
      0,
    );
    const removed = punchHoles(holes, HOLE_EVERY);
    const expected = await benchFingerprint(cluster, 'postgres');
    const cases: [string, string[]][] = [
      ['(a) one local repository', [first]],
      ['(b) local, then a second local copy', [first, second]],
      ['(b) local, then the bucket', [first, bucket]],
      ['(c) the bucket alone', [bucket]],
      [`(d) local missing ${removed} of ${segments} segment objects, then a local copy`, [holes, second]],
      [`(d) local missing ${removed} of ${segments} segment objects, then the bucket`, [holes, bucket]],
    ];
    console.log(`restore --to latest of the archive (base backup + ${changes} changes, ${segments} segments), each into a new database equal to the source:`);
    let base = 0;
    for (const [index, [what, repos]] of cases.entries()) {
      const db = `restored_${index}`;
      const r = await timedRestore(target, repos, db, gcs);
      const got = await benchFingerprint(target, db);
      if (got !== expected) throw new Error(`${what}: restored ${got}, the source holds ${expected}`);
      if (index === 0) base = r.seconds;
      console.log(`  ${what}: ${r.seconds.toFixed(2)} s, peak RSS ${r.peakMb.toFixed(0)} MB, ratio to (a) ${(r.seconds / base).toFixed(2)}`);
    }
  } finally {
    await Promise.all([cluster.destroy(), target.destroy()]);
    await gcs.close();
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
