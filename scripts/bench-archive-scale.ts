/**
 * Archive-scale benchmark: what the commands users run often cost as the archive grows, on a local
 * repository and on the test GCS server, at about 2,000 and about 100,000 segments (goal: at most 1.5x).
 *
 * Each archive is what the archiver writes for a long stretch of small transactions and heartbeats:
 *   1. a real archiver (`--segment-age 50ms`) stores a base backup's first segments: small transactions;
 *   2. the long middle is written through the archive code directly (SegmentBuilder, checked manifests,
 *      the chain, the index built as the archiver builds it): one heartbeat transaction per segment, as
 *      an idle archiver writes every --heartbeat, in LSN room the source made with pg_switch_wal();
 *   3. the real archiver resumes after it; a second base backup, more small transactions and a mark.
 * Then, three times each: `list`, `status`, `restore --dry-run` (latest), `log --since` (the last
 * seconds) and a small restore (latest, from the second backup). Best and worst of three are printed.
 * Once per archive, a restore from the first backup through the whole middle gives the cost of a segment.
 * Then the local archive is compacted (`pitr compact`, as `archive --retention` does with what is older
 * than an hour) and measured again.
 *
 *   npm run bench:archive-scale
 *   BENCH_SEGMENTS=2000,20000 npm run bench:archive-scale
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rebuildIndex } from '../src/archive/index-builder';
import { Repository } from '../src/archive/repository';
import type { SegmentManifest } from '../src/archive/segment-manifest';
import { ArchiveView } from '../src/archive/archive-view';
import { parseLsn, type Lsn } from '../src/pg/lsn';
import { parseIsoMicros } from '../src/pg/pg-time';
import { LocalStorage } from '../src/storage/local/local-storage';
import { FakeGcsServer } from '../test/fake-gcs/fake-gcs-server';
import { PgCluster } from '../test/harness/pg-cluster';
import { HEARTBEAT_LSN_STEP, writeHeartbeatSegments } from '../test/harness/heartbeat-segments';
import { PITR_BIN, waitSlot } from './bench-util';
import { localPathOf, objectNameOfPath } from '../src/storage/local/local-layout';

const SIZES = (process.env.BENCH_SEGMENTS ?? '2000,100000').split(',').map(Number);
const RUNS = 3;
const REAL_TRANSACTIONS = 40;
const BUCKET = 'bench';

interface Run {
  code: number | null;
  seconds: number;
  stdout: string;
  stderr: string;
}

function pitr(args: string[]): Promise<Run> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PITR_BIN, ...args, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, seconds: Number(process.hrtime.bigint() - started) / 1e9, stdout, stderr }));
  });
}

async function mustPitr(args: string[]): Promise<Run> {
  const run = await pitr(args);
  if (run.code !== 0) throw new Error(`pitr ${args.join(' ')} exited ${run.code}:\n${run.stderr.slice(-2000)}`);
  return run;
}

const insertLsn = async (cluster: PgCluster, db: string): Promise<string> =>
  ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn', [], db))[0] as { lsn: string }).lsn;

/** Runs `pitr archive` while `work` runs, then until the slot confirmed everything, then stops it. */
async function archiving(cluster: PgCluster, db: string, slot: string, repo: string, work: () => Promise<void>): Promise<void> {
  const child = spawn(
    process.execPath,
    [PITR_BIN, 'archive', '--source', cluster.url(db), '--repo', repo, '--slot', slot, '--segment-age', '50ms', '--heartbeat', '10s', '--log-level', 'warn'],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const exited = new Promise<number | null>((r) => child.on('close', r));
  try {
    for (;;) {
      const rows = await cluster.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot], db);
      if (rows[0]?.active) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await work();
    await waitSlot(cluster, slot, await insertLsn(cluster, db));
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`pitr archive exited ${code}`);
}

async function smallTransactions(cluster: PgCluster, db: string, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    await cluster.query('INSERT INTO items VALUES ($1::int, md5($1::text)) ON CONFLICT (id) DO UPDATE SET v = md5(items.v)', [i % 500], db);
    await new Promise((r) => setTimeout(r, 60)); // past --segment-age: a segment each
  }
}

/** Writes `count` heartbeat segments after `after` into the repository directory, chained, as the archiver would. */
async function heartbeatSegmentsAfter(repoDir: string, after: SegmentManifest, count: number, roomEnd: Lsn): Promise<SegmentManifest[]> {
  const firstLsn = parseLsn(after.endLsn) + HEARTBEAT_LSN_STEP;
  if (firstLsn + HEARTBEAT_LSN_STEP * BigInt(count) >= roomEnd) throw new Error('not enough LSN room for the heartbeat segments');
  const spoolDir = mkdtempSync(path.join(tmpdir(), 'pitr-scale-spool-'));
  try {
    return await writeHeartbeatSegments({
      previous: { name: after.name, sha256: after.sha256 },
      identity: { systemIdentifier: after.systemIdentifier, database: after.database },
      firstLsn,
      firstTime: parseIsoMicros(after.lastCommitTime) + 1000n,
      count,
      spoolDir,
      store: async (name, data) => {
        const file = path.join(repoDir, ...localPathOf(name));
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, data);
      },
    });
  } finally {
    rmSync(spoolDir, { recursive: true, force: true });
  }
}

/** Builds a repository of about `size` segments for database `db` (see the top of the file). */
async function buildArchive(
  cluster: PgCluster,
  size: number,
): Promise<{ repoDir: string; db: string; slot: string; since: string; middle: { segments: number; lastCommitLsn: string } }> {
  const db = `scale_${size}`;
  const slot = `pitr_${size}`;
  const repoDir = mkdtempSync(path.join(tmpdir(), `pitr-scale-${size}-`));
  await cluster.query(`CREATE DATABASE ${db}`);
  await cluster.query('CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL)', [], db);
  await cluster.query('INSERT INTO items SELECT g, md5(g::text) FROM generate_series(0, 499) g', [], db);
  await mustPitr(['init', '--source', cluster.url(db), '--repo', repoDir, '--slot', slot]);
  await archiving(cluster, db, slot, repoDir, async () => {
    await mustPitr(['backup', '--source', cluster.url(db), '--repo', repoDir]);
    await smallTransactions(cluster, db, 0, REAL_TRANSACTIONS);
  });
  // LSN room for the middle: WAL switched forward, with nothing the archiver would keep in it
  const needed = BigInt(size) * HEARTBEAT_LSN_STEP + 0x10000n;
  for (
    let i = 0;
    parseLsn(await insertLsn(cluster, db)) < parseLsn((await new Repository(new LocalStorage(repoDir)).latestSegment())?.endLsn ?? '0/0') + needed && i < 64;
    i++
  ) {
    await cluster.query('SELECT txid_current()', [], db);
    await cluster.query('SELECT pg_switch_wal()', [], db);
  }
  const repo = new Repository(new LocalStorage(repoDir));
  const latest = (await repo.latestSegment()) as SegmentManifest;
  const realSoFar = (await repo.segmentManifestNames()).length;
  const middle = Math.max(0, size - realSoFar - REAL_TRANSACTIONS - 5); // the real ones after it: about one a transaction
  const written = await heartbeatSegmentsAfter(repoDir, latest, middle, parseLsn(await insertLsn(cluster, db)));
  const identity = { systemIdentifier: latest.systemIdentifier, database: latest.database };
  await rebuildIndex(repo, identity, await (await ArchiveView.open(repo)).all());
  const last = written[written.length - 1] ?? latest;
  // the source's slot moves past the room, as the archiver acknowledging heartbeats would have moved it
  await cluster.query('SELECT pg_replication_slot_advance($1, $2::pg_lsn)', [slot, last.endLsn], db);
  let since = '';
  await archiving(cluster, db, slot, repoDir, async () => {
    await mustPitr(['backup', '--source', cluster.url(db), '--repo', repoDir]);
    await smallTransactions(cluster, db, REAL_TRANSACTIONS, REAL_TRANSACTIONS / 2);
    await mustPitr(['mark', 'bench', '--source', cluster.url(db)]);
    since = new Date().toISOString();
    await smallTransactions(cluster, db, REAL_TRANSACTIONS * 2, REAL_TRANSACTIONS / 2);
  });
  return { repoDir, db, slot, since, middle: { segments: written.length, lastCommitLsn: last.lastCommitLsn } };
}

/**
 * A restore from the first backup to the last heartbeat of the middle: it replays every segment of the
 * long run, so its time over their number is what one segment costs a restore.
 */
async function longReplay(
  cluster: PgCluster,
  built: { db: string; middle: { segments: number; lastCommitLsn: string } },
  repo: string,
  label: string,
): Promise<void> {
  const target = `long_${built.db}_${label.replace(/\W+/g, '_')}`;
  const run = await mustPitr(['restore', '--repo', repo, '--target', cluster.url(target), '--to', `lsn:${built.middle.lastCommitLsn}`, '--json']);
  const summary = JSON.parse(run.stdout) as { seconds: { replay: number } };
  console.log(
    `${label}: a restore replaying the ${built.middle.segments} heartbeat segments of the middle: ${run.seconds.toFixed(2)} s to exit, replay ${summary.seconds.replay.toFixed(2)} s (${((summary.seconds.replay * 1000) / Math.max(1, built.middle.segments)).toFixed(3)} ms a segment; a day of one-second segments: ${((summary.seconds.replay / Math.max(1, built.middle.segments)) * 86_400).toFixed(0)} s)`,
  );
  await cluster.query(`DROP DATABASE IF EXISTS ${target}`);
}

/** Copies a local repository into the fake GCS bucket object by object (the same bytes under the same names). */
function copyToGcs(gcs: FakeGcsServer, repoDir: string, prefix: string): void {
  for (const rel of readdirSync(repoDir, { recursive: true, encoding: 'utf8' })) {
    const file = path.join(repoDir, rel);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch {
      continue; // a directory
    }
    if (rel.startsWith('.tmp')) continue;
    gcs.putObjectRaw(BUCKET, `${prefix}/${objectNameOfPath(rel.split(path.sep).join('/'))}`, data);
  }
}

type Measure = Record<string, number[]>;
/** Requests each command made of the GCS server (the same in every run): what grows with the archive, if anything does. */
type Requests = Record<string, number>;

async function measure(
  cluster: PgCluster,
  built: { db: string; slot: string; since: string },
  repo: string,
  extra: string[],
  gcs?: FakeGcsServer,
): Promise<{ m: Measure; requests: Requests }> {
  const out: Measure = { list: [], status: [], 'restore --dry-run': [], 'log --since': [], 'small restore': [] };
  const requests: Requests = {};
  const timed = async (command: string, run: () => Promise<Run>): Promise<void> => {
    gcs?.resetLog();
    out[command]?.push((await run()).seconds);
    if (gcs) requests[command] = gcs.count();
  };
  let n = 0;
  for (let run = 0; run < RUNS; run++) {
    await timed('list', () => mustPitr(['list', '--repo', repo, ...extra, '--json']));
    await timed('status', () => pitr(['status', '--source', cluster.url(built.db), '--slot', built.slot, '--repo', repo, ...extra, '--json']));
    const target = `target_${built.db}_${extra.length > 0 ? 'gcs' : 'local'}_${n++}`;
    await timed('restore --dry-run', () => mustPitr(['restore', '--repo', repo, ...extra, '--target', cluster.url(target), '--to', 'latest', '--dry-run']));
    await timed('log --since', () => mustPitr(['log', '--repo', repo, ...extra, '--since', built.since, '--json']));
    await timed('small restore', () => mustPitr(['restore', '--repo', repo, ...extra, '--target', cluster.url(target), '--to', 'latest', '--json']));
    await cluster.query(`DROP DATABASE IF EXISTS ${target}`);
  }
  return { m: out, requests };
}

const fmt = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}..${Math.max(...xs).toFixed(2)} s`;

async function main(): Promise<void> {
  const cluster = await PgCluster.start({ settings: { max_wal_size: "'4GB'", wal_keep_size: "'2GB'" } });
  const gcs = await FakeGcsServer.start();
  const results: { size: number; segments: number; where: string; m: Measure; requests: Requests }[] = [];
  const dirs: string[] = [];
  try {
    for (const size of SIZES) {
      const started = Date.now();
      const built = await buildArchive(cluster, size);
      dirs.push(built.repoDir);
      const segments = (await new Repository(new LocalStorage(built.repoDir)).segmentManifestNames()).length;
      console.log(`archive of ${segments} segments built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      results.push({ size, segments, where: 'local', ...(await measure(cluster, built, built.repoDir, [])) });
      await longReplay(cluster, built, built.repoDir, `local, ${segments} segments`);
      copyToGcs(gcs, built.repoDir, `scale${size}`);
      results.push({ size, segments, where: 'gcs', ...(await measure(cluster, built, `gs://${BUCKET}/scale${size}`, ['--gcs-endpoint', gcs.url], gcs)) });
      // as `archive --retention` keeps it: what is older than an hour compacted (here: all but the last page)
      const compacted = await mustPitr(['compact', '--repo', built.repoDir, '--older-than', '0s', '--json']);
      const after = (await new Repository(new LocalStorage(built.repoDir)).segmentManifestNames()).length;
      console.log(`compacted into ${after} segments in ${compacted.seconds.toFixed(0)} s`);
      results.push({ size, segments: after, where: 'local, compacted', ...(await measure(cluster, built, built.repoDir, [])) });
      await longReplay(cluster, built, built.repoDir, `local compacted, ${after} segments`);
    }
    console.log(`\nbest..worst of ${RUNS} runs; ratio = largest archive / smallest (best/best, worst/worst; goal at most 1.5)`);
    for (const where of ['local', 'gcs', 'local, compacted']) {
      const rows = results.filter((r) => r.where === where);
      const small = rows[0];
      const large = rows[rows.length - 1];
      if (!small || !large) continue;
      console.log(`\n${where}: ${small.segments} segments vs ${large.segments} segments`);
      for (const command of Object.keys(small.m)) {
        const a = small.m[command] as number[];
        const b = large.m[command] as number[];
        const best = Math.min(...b) / Math.min(...a);
        const worst = Math.max(...b) / Math.max(...a);
        const requests = small.requests[command] === undefined ? '' : `   GCS requests ${small.requests[command]} / ${large.requests[command] ?? '?'}`;
        console.log(`  ${command.padEnd(18)} ${fmt(a).padEnd(14)} ${fmt(b).padEnd(14)} ratio ${best.toFixed(2)} / ${worst.toFixed(2)}${requests}`);
      }
    }
  } finally {
    await gcs.close();
    await cluster.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

void main();
