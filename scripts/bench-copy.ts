/**
 * `pitr copy` benchmark: an archive of a few thousand segments and a base backup, copied local→local and
 * local→GCS (the test GCS server), against a plain copy of the same bytes in the same run: `cp -r` and a
 * node copy of the directory (fs.cp) for local, and a node upload of every file through the GCS client
 * (16 at a time, as `gsutil -m cp -r` would) for GCS, and a node copy that fsyncs each file and its
 * directory as pitr does (the durability `cp -r` does not give). Then the incremental re-runs: nothing new, and
 * after 100 more segments.
 *
 * The archive: a real archiver stores a base backup's segments (a table of 200,000 rows), then the long
 * middle is heartbeat segments written through the archive code directly (test/harness/heartbeat-segments.ts),
 * chained after the last real one, and the index built as the archiver builds it.
 *
 *   npm run bench:copy
 *   BENCH_SEGMENTS=5000 BENCH_TRANSFERS=16 npm run bench:copy
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { ArchiveView } from '../src/archive/archive-view';
import { mapBounded } from '../src/archive/bounded-map';
import { rebuildIndex } from '../src/archive/index-builder';
import { Repository } from '../src/archive/repository';
import type { SegmentManifest } from '../src/archive/segment-manifest';
import { parseLsn } from '../src/pg/lsn';
import { parseIsoMicros } from '../src/pg/pg-time';
import { openBucket } from '../src/storage/gcs/gcs-client';
import { LocalStorage } from '../src/storage/local/local-storage';
import { FakeGcsServer } from '../test/fake-gcs/fake-gcs-server';
import { HEARTBEAT_LSN_STEP, writeHeartbeatSegments } from '../test/harness/heartbeat-segments';
import { PgCluster } from '../test/harness/pg-cluster';
import { archiveUntil, PITR_BIN } from './bench-util';
import { localPathOf } from '../src/storage/local/local-layout';

const SEGMENTS = Number(process.env.BENCH_SEGMENTS ?? 3000);
const TRANSFERS = process.env.BENCH_TRANSFERS;
const BUCKET = 'bench-copy';

interface Run {
  code: number | null;
  seconds: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[]): Promise<Run> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, seconds: Number(process.hrtime.bigint() - started) / 1e9, stdout, stderr }));
  });
}

async function copy(from: string, into: string, gcs: FakeGcsServer): Promise<{ seconds: number; copied: number; present: number }> {
  const args = [PITR_BIN, 'copy', '--from', from, '--into', into, '--gcs-endpoint', gcs.url, '--json', '--log-level', 'warn'];
  if (TRANSFERS) args.push('--transfers', TRANSFERS);
  const r = await run(process.execPath, args);
  if (r.code !== 0) throw new Error(`pitr copy exited ${r.code}:\n${r.stderr.slice(-2000)}`);
  const report = JSON.parse(r.stdout) as { copied: { objects: number }; present: { objects: number } };
  return { seconds: r.seconds, copied: report.copied.objects, present: report.present.objects };
}

function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = process.hrtime.bigint();
  return fn().then((value) => ({ seconds: Number(process.hrtime.bigint() - started) / 1e9, value }));
}

/**
 * A node copy with the durability pitr gives each object: write a temporary file, fsync it, rename it
 * into place, fsync the directory; `transfers` files at once. What separates pitr from `cp -r` is mostly this.
 */
async function durableCopy(from: string, into: string, names: readonly string[], transfers: number): Promise<void> {
  await mapBounded(
    names,
    async (rel) => {
      const target = path.join(into, rel);
      await fs.mkdir(path.dirname(target), { recursive: true });
      const temporary = `${target}.tmp`;
      const handle = await fs.open(temporary, 'w');
      try {
        await handle.writeFile(await fs.readFile(path.join(from, rel)));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temporary, target);
      const dir = await fs.open(path.dirname(target), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    },
    transfers,
  );
}

const files = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((rel) => statSync(path.join(dir, rel)).isFile());

/** Heartbeat segments chained after the repository's latest, stored as files, and the index rebuilt. */
async function appendSegments(repoDir: string, count: number): Promise<void> {
  const repo = new Repository(new LocalStorage(repoDir));
  const after = (await repo.latestSegment()) as SegmentManifest;
  const spoolDir = mkdtempSync(path.join(tmpdir(), 'pitr-bench-copy-spool-'));
  try {
    await writeHeartbeatSegments({
      previous: { name: after.name, sha256: after.sha256 },
      identity: { systemIdentifier: after.systemIdentifier, database: after.database },
      firstLsn: parseLsn(after.endLsn) + HEARTBEAT_LSN_STEP,
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
  await rebuildIndex(repo, { systemIdentifier: after.systemIdentifier, database: after.database }, await (await ArchiveView.open(repo)).all());
}

const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
const s = (seconds: number): string => `${seconds.toFixed(2)} s`;

async function main(): Promise<void> {
  const cluster = await PgCluster.start();
  const gcs = await FakeGcsServer.start();
  const scratch = mkdtempSync(path.join(tmpdir(), 'pitr-bench-copy-'));
  try {
    const source = path.join(scratch, 'source');
    await cluster.query('CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL)');
    await cluster.query('INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 200000) g');
    const init = await run(process.execPath, [PITR_BIN, 'init', '--source', cluster.url(), '--repo', source, '--log-level', 'warn']);
    if (init.code !== 0) throw new Error(`pitr init exited ${init.code}: ${init.stderr}`);
    const backup = await run(process.execPath, [PITR_BIN, 'backup', '--source', cluster.url(), '--repo', source, '--log-level', 'warn']);
    if (backup.code !== 0) throw new Error(`pitr backup exited ${backup.code}: ${backup.stderr}`);
    await cluster.query("UPDATE items SET v = v || 'x' WHERE id % 10 = 0");
    const [{ lsn }] = (await cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
    await archiveUntil(cluster, source, lsn);
    await appendSegments(source, SEGMENTS);
    const names = files(source);
    const bytes = names.reduce((n, rel) => n + statSync(path.join(source, rel)).size, 0);
    const segments = names.filter((n) => n.startsWith('segments/') && n.endsWith('.lz4')).length;
    console.log(`archive: ${segments} segments and a base backup of 200,000 rows: ${names.length} files, ${(bytes / 1024 / 1024).toFixed(1)} MiB`);
    console.log(
      `pitr copy --transfers ${TRANSFERS ?? '(default 4)'}; each figure one run; ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(1) ?? '?'}`,
    );

    // local → local
    const cpTarget = path.join(scratch, 'cp');
    const cp = await run('cp', ['-r', source, cpTarget]);
    if (cp.code !== 0) throw new Error(`cp exited ${cp.code}`);
    const nodeCopy = await timed(async () => cpSync(source, path.join(scratch, 'node-cp'), { recursive: true }));
    const durable = await timed(() => durableCopy(source, path.join(scratch, 'durable'), names, Number(TRANSFERS ?? 4)));
    const local = await copy(source, path.join(scratch, 'local'), gcs);
    const localAgain = await copy(source, path.join(scratch, 'local'), gcs);
    console.log(`local → local:  pitr copy ${s(local.seconds)} (${local.copied} objects); cp -r ${s(cp.seconds)}; node fs.cp ${s(nodeCopy.seconds)}`);
    console.log(`                node copy with fsync of each file and its directory, ${TRANSFERS ?? 4} at a time: ${s(durable.seconds)}`);
    console.log(
      `                ratio pitr/cp -r ${ratio(local.seconds, cp.seconds)}, pitr/fs.cp ${ratio(local.seconds, nodeCopy.seconds)}, pitr/fsync copy ${ratio(local.seconds, durable.seconds)}`,
    );
    console.log(`                re-run, nothing new: ${s(localAgain.seconds)} (${localAgain.copied} copied, ${localAgain.present} present)`);

    // local → GCS
    const gcsCopy = await copy(source, `gs://${BUCKET}/pitr`, gcs);
    const gcsAgain = await copy(source, `gs://${BUCKET}/pitr`, gcs);
    const bucket = openBucket({ bucket: BUCKET, apiEndpoint: gcs.url, timeoutMs: 60_000 });
    const upload = await timed(() =>
      mapBounded(names, (rel) => bucket.upload(path.join(source, rel), { destination: `plain/${rel}`, resumable: false, validation: false }), 16),
    );
    console.log(`local → GCS:    pitr copy ${s(gcsCopy.seconds)} (${gcsCopy.copied} objects); node upload of every file, 16 at a time ${s(upload.seconds)}`);
    console.log(
      `                ratio pitr/plain upload ${ratio(gcsCopy.seconds, upload.seconds)} (the plain upload runs in the process serving the test GCS server)`,
    );
    console.log(`                re-run, nothing new: ${s(gcsAgain.seconds)} (${gcsAgain.copied} copied, ${gcsAgain.present} present)`);

    // incremental: 100 more segments
    await appendSegments(source, 100);
    const localMore = await copy(source, path.join(scratch, 'local'), gcs);
    const gcsMore = await copy(source, `gs://${BUCKET}/pitr`, gcs);
    console.log(
      `after 100 more segments: local re-run ${s(localMore.seconds)} (${localMore.copied} copied), GCS re-run ${s(gcsMore.seconds)} (${gcsMore.copied} copied)`,
    );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await gcs.close();
    await cluster.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
