/**
 * Restore benchmark: replay of one backlog of row changes by `pitr restore` (from the archive) and by
 * PostgreSQL's own logical replication (a subscription on a slot created at the same point), in the
 * same run, into the same subscriber cluster, with both results checked against the source.
 *
 *   npm run bench:restore                       # 1,000,000-change backlog
 *   BENCH_CHANGES=200000 npm run bench:restore
 *   BENCH_STATEMENTS=1 npm run bench:restore    # also the OLTP restore's costliest statements (pg_stat_statements)
 *   BENCH_PROFILE=/tmp/prof npm run bench:restore   # each restore writes a V8 CPU profile there (slower: not for ratios)
 *   BENCH_ONLY=oltp npm run bench:restore       # only the OLTP-shaped backlog (a quicker round)
 *
 * The backlog: transactions of 1,000 changes over two tables (per table 250 inserts, 125 updates of
 * rows committed by the previous transaction, 125 deletes). `pitr archive` stores it (not part of the
 * ratio); then `pitr restore --to latest` is timed from start to exit (backup load included), and the
 * subscription from CREATE SUBSCRIPTION until its replication origin shows the last backlog commit
 * applied on the subscriber. CPU seconds are shown per side: the pitr process (and the pg_restore it
 * runs) and every PostgreSQL process of each cluster, to tell where the time goes.
 *
 * Then one large transaction (BENCH_BIG_ROWS inserts plus updates of half of them, default 2,000,000)
 * is archived and restored from a backup taken just before it, sampling pitr's peak RSS: memory must
 * not grow with the size of a transaction.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AUTO_REPLICA_IDENTITY_SQL } from '../src/capture/ddl-capture-sql';
import { PgCluster } from '../test/harness/pg-cluster';
import { PITR_BIN, archiveUntil, reapedChildrenCpu, samplePeakRss, serverCpu } from './bench-util';

const execFileAsync = promisify(execFile);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 1_000_000);
/** Rows of the one large transaction (each inserted, half of them updated again in it). */
const BIG_ROWS = Number(process.env.BENCH_BIG_ROWS ?? 2_000_000);
const TABLES = ['bench', 'bench2'];

async function one<R extends Record<string, unknown>>(cluster: PgCluster, sql: string, params: unknown[] = [], database = 'postgres'): Promise<R> {
  return (await cluster.query<R>(sql, params, database))[0] as R;
}

interface RestoreJson {
  transactions: number;
  changes: number;
  lastApplied: { xid: number | null; commitLsn: string; commitTime: string } | null;
  seconds: { total: number; load: number; replay: number };
}

interface RestoreRun {
  seconds: number;
  code: number | null;
  stdout: string;
  stderr: string;
  peakMb: number;
  pitrCpu: number;
  serverCpu: number;
}

/** Runs `pitr restore` to completion: wall time, exit code, output, peak RSS, CPU of pitr and of the target cluster. */
const PROFILE = process.env.BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROFILE] : [];

async function timedRestore(target: PgCluster, repo: string, targetUrl: string, extra: string[] = []): Promise<RestoreRun> {
  const cpu0 = reapedChildrenCpu();
  const server0 = serverCpu(target);
  const started = process.hrtime.bigint();
  const child = spawn(
    process.execPath,
    [...PROFILE, PITR_BIN, 'restore', '--repo', repo, '--target', targetUrl, '--to', 'latest', '--json', '--log-level', 'info', ...extra],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const rss = samplePeakRss(child.pid, 20);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakMb = rss.stop();
  printConnections(stderr);
  return { seconds, code, stdout, stderr, peakMb, pitrCpu: reapedChildrenCpu() - cpu0, serverCpu: serverCpu(target) - server0 };
}

/** The restore's own account of each replay connection's busy time (its replay_connections log event). */
function printConnections(stderr: string): void {
  for (const line of stderr.split('\n')) {
    if (!line.includes('"replay_connections"')) continue;
    const event = JSON.parse(line) as {
      replaySeconds: number;
      connections: { connection: number; busySeconds: number; tables: { table: string; seconds: number }[] }[];
    };
    const each = event.connections.map(
      (c) => `#${c.connection} busy ${c.busySeconds.toFixed(2)} s (${c.tables.map((t) => `${t.table} ${t.seconds.toFixed(2)}`).join(', ')})`,
    );
    console.log(`    replay connections over ${event.replaySeconds.toFixed(2)} s: ${each.join('; ')}`);
  }
}

interface SubscriptionRun {
  /** Until the subscriber's origin shows the last backlog commit applied. */
  seconds: number;
  /** Until the source slot's confirmed_flush_lsn reached the WAL end after the backlog (null: not within 15 s more). */
  slotSeconds: number | null;
  sourceCpu: number;
  targetCpu: number;
}

/**
 * Creates the subscription on the slot made right after the backup and waits until it has applied
 * the transaction whose commit follows `lastTxnLsn` (the WAL insert position inside the backlog's last
 * transaction, before its commit): the replication origin's remote_lsn is the end of the last remote
 * commit applied, advanced by the local commit.
 */
async function timedSubscription(source: PgCluster, subscriber: PgCluster, lastTxnLsn: string, backlogEnd: string): Promise<SubscriptionRun> {
  const source0 = serverCpu(source);
  const target0 = serverCpu(subscriber);
  const started = process.hrtime.bigint();
  const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  await subscriber.query(
    `CREATE SUBSCRIPTION s CONNECTION '${source.url()}' PUBLICATION pitr WITH (create_slot = false, slot_name = 'sub_slot', copy_data = false)`,
    [],
    'sub_target',
  );
  let seconds: number | undefined;
  let slotSeconds: number | null | undefined;
  let sourceCpu = 0;
  let targetCpu = 0;
  const deadline = Date.now() + 3_600_000;
  while (seconds === undefined || slotSeconds === undefined) {
    if (seconds === undefined) {
      const row = await one<{ ok: boolean | null }>(
        subscriber,
        `SELECT o.remote_lsn > $1::pg_lsn AS ok FROM pg_catalog.pg_replication_origin_status o
           JOIN pg_catalog.pg_subscription s ON o.external_id = 'pg_' || s.oid WHERE s.subname = 's'`,
        [lastTxnLsn],
        'sub_target',
      );
      if (row?.ok) {
        seconds = elapsed();
        sourceCpu = serverCpu(source) - source0;
        targetCpu = serverCpu(subscriber) - target0;
      }
    }
    if (slotSeconds === undefined) {
      const row = await one<{ ok: boolean | null }>(
        source,
        "SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'sub_slot'",
        [backlogEnd],
      );
      if (row?.ok) slotSeconds = elapsed();
      else if (seconds !== undefined && elapsed() > seconds + 15) slotSeconds = null;
    }
    if (Date.now() > deadline) throw new Error('the subscription did not catch up within an hour');
    await new Promise((r) => setTimeout(r, 20));
  }
  return { seconds, slotSeconds, sourceCpu, targetCpu };
}

/** md5 of a table's rows in id order, and its row count. */
async function fingerprint(cluster: PgCluster, database: string, table: string): Promise<string> {
  const row = await one<{ n: string; md5: string | null }>(
    cluster,
    `SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY id)) AS md5 FROM public.${table} t`,
    [],
    database,
  );
  return `${row.n} rows, md5 ${row.md5 ?? '-'}`;
}

const DDL = TABLES.map((t) => `CREATE TABLE ${t} (id bigint PRIMARY KEY, n int, v text)`);
/** A subscription to the FOR ALL TABLES publication needs every table of it, pitr's own bookkeeping too. */
const SUBSCRIBER_DDL = [...DDL, 'CREATE SCHEMA pitr', AUTO_REPLICA_IDENTITY_SQL];

async function main(): Promise<void> {
  const settings = {
    max_wal_size: "'16GB'",
    checkpoint_timeout: "'30min'",
    shared_buffers: "'256MB'",
    logical_decoding_work_mem: "'64MB'",
  };
  const source = await PgCluster.start({ settings });
  const subscriber = await PgCluster.start({
    settings: process.env.BENCH_STATEMENTS ? { ...settings, shared_preload_libraries: "'pg_stat_statements'" } : settings,
  });
  const repo = mkdtempSync(path.join(tmpdir(), 'pitr-bench-restore-'));
  try {
    const [version] = await source.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    for (const sql of DDL) await source.query(sql);
    if (process.env.BENCH_ONLY === 'oltp') {
      await execFileAsync(process.execPath, [PITR_BIN, 'init', '--source', source.url(), '--repo', repo, '--log-level', 'warn']);
      if (!(await oltpComparison(source, subscriber, repo))) process.exitCode = 1;
      return;
    }
    // Backlog: transactions of 1,000 changes over both tables: per table 250 inserts, 125 updates of
    // rows the previous transaction committed (its own first rows in the first transaction), 125
    // deletes of rows it inserted. last_lsn: the WAL insert position before the last commit. Created
    // before the backup, so that its DDL is not part of the backlog.
    await source.query(`CREATE PROCEDURE load(txns int, INOUT last_lsn pg_lsn DEFAULT NULL) LANGUAGE plpgsql AS $$
      DECLARE base bigint; prev bigint;
      BEGIN
        FOR t IN 0 .. txns - 1 LOOP
          base := t * 250;
          prev := greatest(base - 250, 0);
          INSERT INTO bench SELECT base + g, g, md5((base + g)::text) FROM generate_series(1, 250) g;
          INSERT INTO bench2 SELECT base + g, -g, 'row ' || (base + g) FROM generate_series(1, 250) g;
          UPDATE bench SET n = n + 1 WHERE id > prev AND id <= prev + 125;
          UPDATE bench2 SET n = n + 1, v = v || ' updated in ' || t WHERE id > prev AND id <= prev + 125;
          DELETE FROM bench WHERE id > base + 125 AND id <= base + 250;
          DELETE FROM bench2 WHERE id > base + 125 AND id <= base + 250;
          IF t = txns - 1 THEN last_lsn := pg_current_wal_insert_lsn(); END IF;
          COMMIT;
        END LOOP;
      END $$`);
    await execFileAsync(process.execPath, [PITR_BIN, 'init', '--source', source.url(), '--repo', repo, '--log-level', 'warn']);
    const { stdout: backupOut } = await execFileAsync(process.execPath, [
      PITR_BIN,
      'backup',
      '--source',
      source.url(),
      '--repo',
      repo,
      '--log-level',
      'warn',
      '--json',
    ]);
    const backup = JSON.parse(backupOut) as { id: string; alignedLsn: string };
    // the subscription's starting point: right after the backup, before any change
    const [slot] = await source.query<{ lsn: string }>("SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot('sub_slot', 'pgoutput')");

    const perTxn = 1000;
    const txns = Math.ceil(CHANGES / perTxn);
    const changes = txns * perTxn;
    console.log(
      `PostgreSQL ${version?.v}; backup ${backup.id} (aligned at ${backup.alignedLsn}), slot sub_slot at ${slot?.lsn}; building a backlog of ${changes} row changes in ${txns} transactions...`,
    );
    const loadStarted = process.hrtime.bigint();
    const [called] = await source.query<{ last_lsn: string }>('CALL load($1)', [txns]);
    const loadSeconds = Number(process.hrtime.bigint() - loadStarted) / 1e9;
    const lastTxnLsn = called?.last_lsn as string;
    const [end] = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const backlogEnd = end?.lsn as string;
    console.log(`  generated in ${loadSeconds.toFixed(2)} s; WAL ${slot?.lsn} to ${backlogEnd}, last transaction after ${lastTxnLsn}`);

    const archive = await archiveUntil(source, repo, backlogEnd);
    const { stdout: du } = await execFileAsync('du', ['-sb', path.join(repo, 'segments')]);
    const segmentFiles = (await execFileAsync('find', [path.join(repo, 'segments'), '-name', '*.lz4'])).stdout.split('\n').filter(Boolean).length;
    console.log(
      `  archived by pitr archive in ${archive.seconds.toFixed(2)} s (not part of the ratio): ${segmentFiles} segments, ${(Number(du.split('\t')[0]) / 1048576).toFixed(1)} MB`,
    );

    // A: pitr restore into a new database of the subscriber cluster
    const restore = await timedRestore(subscriber, repo, subscriber.url('pitr_target'));
    let summary: RestoreJson | undefined;
    if (restore.code === 0) summary = JSON.parse(restore.stdout) as RestoreJson;

    // B: a subscription on sub_slot into sub_target, same cluster
    await subscriber.query('CREATE DATABASE sub_target');
    for (const sql of SUBSCRIBER_DDL) await subscriber.query(sql, [], 'sub_target');
    const sub = await timedSubscription(source, subscriber, lastTxnLsn, backlogEnd);
    await subscriber.query('DROP SUBSCRIPTION s', [], 'sub_target');

    console.log(`backlog: ${changes} changes in ${txns} transactions, tables ${TABLES.join(', ')}`);
    if (summary) {
      console.log(
        `  pitr restore --to latest: ${restore.seconds.toFixed(2)} s to exit, ${Math.round(changes / restore.seconds)} changes/s (its own seconds: total ${summary.seconds.total.toFixed(2)}, load ${summary.seconds.load.toFixed(2)}, replay ${summary.seconds.replay.toFixed(2)}); ${summary.transactions} transactions, ${summary.changes} changes replayed`,
      );
      console.log(
        `    cpu: pitr (with its pg_restore) ${restore.pitrCpu.toFixed(1)} s, target server ${restore.serverCpu.toFixed(1)} s; peak RSS ${restore.peakMb.toFixed(0)} MB`,
      );
    } else {
      console.log(`  pitr restore FAILED: exit code ${restore.code} after ${restore.seconds.toFixed(2)} s`);
      console.log(`    stdout: ${restore.stdout.trim()}`);
      console.log(`    stderr: ${restore.stderr.trim()}`);
    }
    console.log(
      `  subscription (pgoutput, default options): ${sub.seconds.toFixed(2)} s until the last commit was applied, ${Math.round(changes / sub.seconds)} changes/s; slot confirmed the WAL end after ${sub.slotSeconds === null ? 'more than 15 s more' : `${sub.slotSeconds.toFixed(2)} s`}`,
    );
    console.log(`    cpu: source server (walsender decoding) ${sub.sourceCpu.toFixed(1)} s, subscriber server (apply worker) ${sub.targetCpu.toFixed(1)} s`);
    if (summary) console.log(`  ratio pitr restore/subscription time: ${(restore.seconds / sub.seconds).toFixed(2)} (target < 1)`);

    let equal = summary !== undefined;
    if (summary && summary.changes !== changes) {
      console.log(`  pitr restore reported ${summary.changes} changes, expected ${changes}`);
      equal = false;
    }
    console.log('contents (source / pitr restore / subscription):');
    for (const table of TABLES) {
      const want = await fingerprint(source, 'postgres', table);
      const fromPitr = summary ? await fingerprint(subscriber, 'pitr_target', table) : 'not restored';
      const fromSub = await fingerprint(subscriber, 'sub_target', table);
      const ok = fromPitr === want && fromSub === want;
      equal &&= ok;
      console.log(`  ${table}: ${want}${ok ? ' (all three)' : ` / ${fromPitr} / ${fromSub}  MISMATCH`}`);
    }
    console.log(equal ? 'contents equal' : 'contents NOT equal');
    if (!equal) process.exitCode = 1;

    if (!(await oltpComparison(source, subscriber, repo))) process.exitCode = 1;

    // C: one large transaction, restored from a backup taken just before it
    await source.query('CREATE TABLE big (id bigint PRIMARY KEY, v text)');
    await execFileAsync(process.execPath, [PITR_BIN, 'backup', '--source', source.url(), '--repo', repo, '--log-level', 'warn']);
    await source.withClient(async (client) => {
      await client.query('BEGIN');
      await client.query('INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, $1::int) g', [BIG_ROWS]);
      await client.query(`UPDATE big SET v = v || ' updated' WHERE id % 2 = 0`);
      await client.query('COMMIT');
    });
    const bigChanges = BIG_ROWS + Math.floor(BIG_ROWS / 2);
    const [bigEnd] = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    const bigArchive = await archiveUntil(source, repo, bigEnd?.lsn as string);
    const big = await timedRestore(subscriber, repo, subscriber.url('pitr_big'), ['--tables', 'big']);
    const bigWant = await fingerprint(source, 'postgres', 'big');
    const bigGot = big.code === 0 ? await fingerprint(subscriber, 'pitr_big', 'big') : `restore failed: ${big.stderr.trim()}`;
    console.log(
      `one transaction of ${bigChanges} changes (${BIG_ROWS} inserts, ${BIG_ROWS / 2} updates): archived in ${bigArchive.seconds.toFixed(2)} s; restored in ${big.seconds.toFixed(2)} s (${Math.round(bigChanges / big.seconds)} changes/s), peak RSS ${big.peakMb.toFixed(0)} MB; big: ${bigGot === bigWant ? `${bigWant} (equal)` : `${bigGot} / ${bigWant}  MISMATCH`}`,
    );
    if (bigGot !== bigWant) process.exitCode = 1;
  } finally {
    await subscriber.destroy();
    await source.destroy();
    rmSync(repo, { recursive: true, force: true });
  }
}

const OLTP_SECONDS = Number(process.env.BENCH_OLTP_SECONDS ?? 15);
const OLTP_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history', 'bulk'];

/**
 * The OLTP-shaped backlog: pgbench's default TPC-B-like script from 2 clients for BENCH_OLTP_SECONDS
 * (many small transactions on a few hot rows: every transaction updates the one branch, one of ten
 * tellers, one of 100,000 accounts, and inserts into the history), then 300,000 inserts, 200,000
 * updates and 50,000 deletes in statements of 1,000 rows. pitr restore (from a backup taken after
 * pgbench's initialisation) and a subscription (on a slot made right after that backup, into a copy of
 * the initialised tables) replay it; both must end equal to the source.
 */
async function oltpComparison(source: PgCluster, subscriber: PgCluster, repo: string): Promise<boolean> {
  const pgbench = path.join(source.binDir, 'pgbench');
  await execFileAsync(pgbench, ['-i', '-q', '-s', '1', source.url()]);
  await source.query('CREATE TABLE bulk (id bigint PRIMARY KEY, n int, v text)');
  const { stdout: backupOut } = await execFileAsync(process.execPath, [
    PITR_BIN,
    'backup',
    '--source',
    source.url(),
    '--repo',
    repo,
    '--log-level',
    'warn',
    '--json',
  ]);
  const backup = JSON.parse(backupOut) as { id: string };
  await source.query("SELECT pg_create_logical_replication_slot('oltp_slot', 'pgoutput')");
  // the subscriber's copy of the initialised tables (pgbench's data is the same every time)
  await subscriber.query('CREATE DATABASE sub_oltp');
  await execFileAsync(pgbench, ['-i', '-q', '-s', '1', subscriber.url('sub_oltp')]);
  await subscriber.query('CREATE TABLE bulk (id bigint PRIMARY KEY, n int, v text)', [], 'sub_oltp');
  for (const sql of SUBSCRIBER_DDL) await subscriber.query(sql, [], 'sub_oltp'); // every published table must exist (the first backlog's are not changed again)
  await subscriber.query('ALTER TABLE pgbench_history REPLICA IDENTITY FULL', [], 'sub_oltp');

  const generated = process.hrtime.bigint();
  const { stdout: bench } = await execFileAsync(pgbench, ['-n', '-c', '2', '-j', '2', '-T', String(OLTP_SECONDS), source.url()]);
  const txns = /number of transactions actually processed: (\d+)/.exec(bench)?.[1] ?? '?';
  await source.query(`CREATE PROCEDURE bulk_load(INOUT last_lsn pg_lsn DEFAULT NULL) LANGUAGE plpgsql AS $$
    BEGIN
      FOR s IN 0 .. 299 LOOP INSERT INTO bulk SELECT s * 1000 + g, g, md5((s * 1000 + g)::text) FROM generate_series(1, 1000) g; COMMIT; END LOOP;
      FOR s IN 0 .. 199 LOOP UPDATE bulk SET n = n + 1, v = v || 'u' WHERE id > s * 1000 AND id <= s * 1000 + 1000; COMMIT; END LOOP;
      FOR s IN 0 .. 49 LOOP DELETE FROM bulk WHERE id > s * 6000 AND id <= s * 6000 + 1000; IF s = 49 THEN last_lsn := pg_current_wal_insert_lsn(); END IF; COMMIT; END LOOP;
    END $$`);
  const [called] = await source.query<{ last_lsn: string }>('CALL bulk_load()');
  const [end] = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  const changes = Number(txns) * 4 + 550_000;
  console.log(
    `OLTP-shaped backlog: pgbench (TPC-B-like, 2 clients, ${OLTP_SECONDS} s) ${txns} transactions, then 550,000 changes in 1,000-row statements (about ${changes} changes), generated in ${(Number(process.hrtime.bigint() - generated) / 1e9).toFixed(1)} s`,
  );
  const archive = await archiveUntil(source, repo, end?.lsn as string);
  console.log(`  archived by pitr archive in ${archive.seconds.toFixed(2)} s (not part of the ratio)`);

  if (process.env.BENCH_STATEMENTS) await subscriber.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()');
  const restore = await timedRestore(subscriber, repo, subscriber.url('pitr_oltp'));
  const summary = restore.code === 0 ? (JSON.parse(restore.stdout) as RestoreJson) : undefined;
  if (process.env.BENCH_STATEMENTS)
    for (const row of await subscriber.query<{ calls: string; ms: string; q: string }>(
      `SELECT calls::text, round(total_exec_time)::text AS ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS q FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`,
    ))
      console.log(`    ${row.ms.padStart(7)} ms ${row.calls.padStart(6)} calls  ${row.q}`);
  const sub = await (async () => {
    const started = process.hrtime.bigint();
    const source0 = serverCpu(source);
    const target0 = serverCpu(subscriber);
    await subscriber.query(
      `CREATE SUBSCRIPTION so CONNECTION '${source.url()}' PUBLICATION pitr WITH (create_slot = false, slot_name = 'oltp_slot', copy_data = false)`,
      [],
      'sub_oltp',
    );
    for (;;) {
      const row = await one<{ ok: boolean | null }>(
        subscriber,
        `SELECT o.remote_lsn > $1::pg_lsn AS ok FROM pg_catalog.pg_replication_origin_status o
           JOIN pg_catalog.pg_subscription s ON o.external_id = 'pg_' || s.oid WHERE s.subname = 'so'`,
        [called?.last_lsn],
        'sub_oltp',
      );
      if (row?.ok) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return { seconds: Number(process.hrtime.bigint() - started) / 1e9, sourceCpu: serverCpu(source) - source0, targetCpu: serverCpu(subscriber) - target0 };
  })();
  await subscriber.query('DROP SUBSCRIPTION so', [], 'sub_oltp');
  if (summary) {
    console.log(
      `  pitr restore --to latest (backup ${backup.id}): ${restore.seconds.toFixed(2)} s to exit (load ${summary.seconds.load.toFixed(2)}, replay ${summary.seconds.replay.toFixed(2)}); ${summary.transactions} transactions; cpu: pitr ${restore.pitrCpu.toFixed(1)} s, target server ${restore.serverCpu.toFixed(1)} s; peak RSS ${restore.peakMb.toFixed(0)} MB`,
    );
  } else console.log(`  pitr restore FAILED: exit code ${restore.code}: ${restore.stderr.trim()}`);
  console.log(
    `  subscription: ${sub.seconds.toFixed(2)} s until the last commit was applied; cpu: walsender ${sub.sourceCpu.toFixed(1)} s, apply worker ${sub.targetCpu.toFixed(1)} s`,
  );
  if (summary)
    console.log(
      `  ratio pitr replay/subscription time: ${(summary.seconds.replay / sub.seconds).toFixed(2)} (target at most 0.5); whole restore to exit/subscription: ${(restore.seconds / sub.seconds).toFixed(2)}`,
    );
  let equal = summary !== undefined;
  for (const table of OLTP_TABLES) {
    const order = table === 'pgbench_history' ? 'tid, bid, aid, delta, mtime' : table === 'bulk' ? 'id' : table.replace('pgbench_', '').slice(0, 1) + 'id';
    const print = async (cluster: PgCluster, db: string): Promise<string> => {
      const row = await one<{ n: string; md5: string | null }>(
        cluster,
        `SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY ${order})) AS md5 FROM public.${table} t`,
        [],
        db,
      );
      return `${row.n} rows, md5 ${row.md5 ?? '-'}`;
    };
    const want = await print(source, 'postgres');
    const fromPitr = summary ? await print(subscriber, 'pitr_oltp') : 'not restored';
    const fromSub = await print(subscriber, 'sub_oltp');
    const ok = want === fromPitr && want === fromSub;
    equal &&= ok;
    console.log(`  ${table}: ${want}${ok ? ' (all three)' : ` / ${fromPitr} / ${fromSub}  MISMATCH`}`);
  }
  console.log(equal ? '  contents equal' : '  contents NOT equal');
  return equal;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
