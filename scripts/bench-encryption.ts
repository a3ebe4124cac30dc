/**
 * Encryption benchmark: the cost of encryption at rest on the same data in one run. One backlog of row
 * changes is archived twice, by `pitr archive` into an unencrypted repository and into an encrypted one
 * (each from its own slot created before the backlog, so both read the same WAL), then each archive is
 * restored (`pitr restore --to latest`, backup load included) into a new database BENCH_ROUNDS times,
 * alternating between the two, every result checked against the source. Prints archive throughput,
 * restore time (best of the rounds), stored bytes and the ratios, then the sealed format's own speed.
 *
 *   npm run bench:encryption                      # 500,000-change backlog
 *   BENCH_CHANGES=100000 npm run bench:encryption
 *   BENCH_ROUNDS=5 npm run bench:encryption       # restores of each archive (default 3; the best counts)
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ObjectOpener, ObjectSealer } from '../src/storage/encrypted/sealed-streams';
import { parseKeyring } from '../src/storage/encrypted/keyring';
import { PgCluster } from '../test/harness/pg-cluster';
import { PITR_BIN, benchFingerprint as fingerprint, reapedChildrenCpu, samplePeakRss, waitSlot } from './bench-util';

const execFileAsync = promisify(execFile);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 500_000);
/** Restores of each archive, alternating between the two; the best of each is compared. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Side {
  name: string;
  repo: string;
  slot: string;
  env: NodeJS.ProcessEnv;
}

const pitrEnv = (side: Side): NodeJS.ProcessEnv => ({ ...process.env, ...side.env });

async function pitr(side: Side, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [PITR_BIN, ...args, '--repo', side.repo, '--log-level', 'warn'], {
    env: pitrEnv(side),
    maxBuffer: 64 << 20,
  });
  return stdout;
}

/** Runs `pitr archive` until its slot has confirmed `lsn`: seconds, peak RSS, CPU seconds. */
async function archiveUntil(source: PgCluster, side: Side, lsn: string): Promise<{ seconds: number; peakMb: number; cpu: number }> {
  const cpu0 = reapedChildrenCpu();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [PITR_BIN, 'archive', '--source', source.url(), '--repo', side.repo, '--slot', side.slot, '--log-level', 'warn'], {
    env: pitrEnv(side),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const rss = samplePeakRss(child.pid, 50);
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const reached = await Promise.race([waitSlot(source, side.slot, lsn).then(() => true), exited.then(() => false)]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (!reached) throw new Error(`pitr archive (${side.name}) exited with ${await exited} before slot ${side.slot} reached ${lsn}`);
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`pitr archive (${side.name}) exited with ${code} after SIGTERM`);
  return { seconds, peakMb, cpu: reapedChildrenCpu() - cpu0 };
}

async function timedRestore(target: PgCluster, side: Side, db: string): Promise<{ seconds: number; peakMb: number; cpu: number }> {
  const cpu0 = reapedChildrenCpu();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [PITR_BIN, 'restore', '--repo', side.repo, '--target', target.url(db), '--to', 'latest', '--log-level', 'warn'], {
    env: pitrEnv(side),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const rss = samplePeakRss(child.pid, 20);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  if (code !== 0) throw new Error(`pitr restore (${side.name}) exited with ${code}`);
  return { seconds, peakMb, cpu: reapedChildrenCpu() - cpu0 };
}

async function storedMb(repo: string): Promise<number> {
  const { stdout } = await execFileAsync('du', ['-sb', path.join(repo, 'segments')]);
  return Number(stdout.split('\t')[0]) / 1048576;
}

/** The sealed format alone, in this process: MB/s sealing and opening BENCH_SEAL_MB of random bytes in 64 KiB pieces. */
function sealThroughput(): { sealMbps: number; openMbps: number } {
  const mb = Number(process.env.BENCH_SEAL_MB ?? 512);
  const keyring = parseKeyring(`bench:${randomBytes(32).toString('hex')}`, 'bench');
  const piece = randomBytes(64 * 1024);
  const sealed: Buffer[] = [];
  const sealer = new ObjectSealer('segments/bench.lz4', keyring);
  let started = process.hrtime.bigint();
  for (let i = 0; i < mb * 16; i++) for (const out of sealer.write(piece)) if (sealed.length < 64) sealed.push(out);
  sealer.end();
  const sealSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  // open a 4 MiB object repeatedly (keeping every sealed chunk of a large one would hold it all in memory)
  const small = new ObjectSealer('o', keyring);
  const object = Buffer.concat([...small.write(Buffer.concat(Array.from({ length: 64 }, () => piece))), ...small.end()]);
  started = process.hrtime.bigint();
  for (let i = 0; i < mb / 4; i++) {
    const opener = new ObjectOpener('o', keyring, 'bench');
    opener.write(object);
    opener.end();
  }
  const openSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { sealMbps: mb / sealSeconds, openMbps: mb / openSeconds };
}

async function main(): Promise<void> {
  const settings = { max_wal_size: "'16GB'", checkpoint_timeout: "'30min'", shared_buffers: "'256MB'", logical_decoding_work_mem: "'64MB'" };
  const source = await PgCluster.start({ settings });
  const target = await PgCluster.start({ settings });
  const work = mkdtempSync(path.join(tmpdir(), 'pitr-bench-encryption-'));
  try {
    const keyFile = path.join(work, 'keys');
    writeFileSync(keyFile, `bench:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const sides: Side[] = [
      { name: 'unencrypted', repo: path.join(work, 'plain'), slot: 'pitr_plain', env: {} },
      { name: 'encrypted', repo: path.join(work, 'sealed'), slot: 'pitr_sealed', env: { PITR_ENCRYPTION_KEY_FILE: keyFile } },
    ];
    await source.query('CREATE TABLE bench (id bigint PRIMARY KEY, n int, v text)');
    await source.query(`CREATE PROCEDURE load(txns int) LANGUAGE plpgsql AS $$
      DECLARE base bigint;
      BEGIN
        FOR t IN 0 .. txns - 1 LOOP
          base := t * 500;
          INSERT INTO bench SELECT base + g, g, md5((base + g)::text) || repeat('x', 60) FROM generate_series(1, 500) g;
          UPDATE bench SET n = n + 1 WHERE id > base AND id <= base + 250;
          DELETE FROM bench WHERE id > base + 250 AND id <= base + 500;
          COMMIT;
        END LOOP;
      END $$`);
    for (const side of sides) {
      await pitr(side, ['init', '--source', source.url(), '--slot', side.slot]);
      await pitr(side, ['backup', '--source', source.url()]);
    }
    const txns = Math.ceil(CHANGES / 1000);
    const changes = txns * 1000;
    console.log(`building a backlog of ${changes} row changes in ${txns} transactions...`);
    await source.query('CALL load($1)', [txns]);
    const [end] = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const expected = await fingerprint(source, 'postgres');

    type Timed = { seconds: number; peakMb: number; cpu: number };
    const results: { side: Side; archive: Timed; restores: Timed[]; mb: number }[] = [];
    for (const side of sides) {
      const archive = await archiveUntil(source, side, end?.lsn as string);
      results.push({ side, archive, restores: [], mb: await storedMb(side.repo) });
    }
    // restores alternate between the two sides, ROUNDS times, so a load on the machine touches both alike
    for (let round = 1; round <= ROUNDS; round++)
      for (const result of results) {
        const db = `restored_${result.side.slot}_${round}`;
        result.restores.push(await timedRestore(target, result.side, db));
        const got = await fingerprint(target, db);
        if (got !== expected) throw new Error(`${result.side.name}: restored ${got}, the source holds ${expected}`);
        await target.query(`DROP DATABASE ${db}`);
      }
    const best = (runs: Timed[]): Timed => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    console.log(`backlog: ${changes} changes in ${txns} transactions; every restore equals the source (${expected})`);
    for (const { side, archive, restores, mb } of results) {
      const restore = best(restores);
      console.log(
        `  ${side.name.padEnd(12)} archive ${archive.seconds.toFixed(2)} s, ${Math.round(changes / archive.seconds)} changes/s, cpu ${archive.cpu.toFixed(1)} s, peak RSS ${archive.peakMb.toFixed(0)} MB, segments ${mb.toFixed(1)} MB; ` +
          `restore best of ${ROUNDS} ${restore.seconds.toFixed(2)} s (all: ${restores.map((r) => r.seconds.toFixed(2)).join(', ')}), cpu ${restore.cpu.toFixed(1)} s, peak RSS ${restore.peakMb.toFixed(0)} MB`,
      );
    }
    const [plain, sealed] = results as [(typeof results)[0], (typeof results)[0]];
    const [plainRestore, sealedRestore] = [best(plain.restores), best(sealed.restores)];
    console.log(
      `  ratios encrypted/unencrypted: archive time ${(sealed.archive.seconds / plain.archive.seconds).toFixed(2)} (throughput ${(plain.archive.seconds / sealed.archive.seconds).toFixed(2)}), ` +
        `archive cpu ${(sealed.archive.cpu / plain.archive.cpu).toFixed(2)}, restore time ${(sealedRestore.seconds / plainRestore.seconds).toFixed(2)}, restore cpu ${(sealedRestore.cpu / plainRestore.cpu).toFixed(2)}, stored bytes ${(sealed.mb / plain.mb).toFixed(3)}`,
    );
    const format = sealThroughput();
    console.log(`  the sealed format alone (one core, this process): seal ${format.sealMbps.toFixed(0)} MB/s, open ${format.openMbps.toFixed(0)} MB/s`);
  } finally {
    await source.destroy();
    await target.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
