import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { ErrorKind, PitrError } from '../errors';
import { waitArchivedUpToNow, waitArchiverStreaming } from './archive-waits';
import { copyRows } from './copy-rows';
import { DemoNarrator } from './demo-narrator';
import { findPgBinaries, type PgBinarySearch } from './find-pg-binaries';
import { PitrCli, childEnvironment, type PitrChild, type PitrRun } from './pitr-cli';
import { serverUser, type ServerUser } from './server-user';
import {
  ACCIDENT_PREDICATE,
  ACCIDENT_SQL,
  RESTORE_TABLES,
  SHOP_SCHEMA_SQL,
  SHOP_TABLES,
  fingerprint,
  runAccident,
  runTraffic,
  sampleDeletedOrders,
  tableCounts,
  type TableFingerprint,
} from './shop-database';
import { ThrowawayCluster } from './throwaway-cluster';

export interface DemoOptions {
  /** Leave the cluster running and the files in place, and say how to connect. */
  keep: boolean;
  search: PgBinarySearch;
  out: NodeJS.WritableStream;
  signal: AbortSignal;
  /** Decides whether the server runs as the postgres user (tests inject it). */
  user?: () => ServerUser;
  env?: NodeJS.ProcessEnv;
}

const SLOT = 'pitr';
const SIDE_DATABASE = 'shop_before_delete';
const TRAFFIC = 30;
const TRAFFIC_AFTER = 6;

function kindOfExitCode(code: number | null): keyof typeof ErrorKind {
  const kinds = Object.entries(ErrorKind) as [keyof typeof ErrorKind, number][];
  return kinds.find(([, value]) => value === code)?.[0] ?? 'Internal';
}

async function connect(url: string, password: string): Promise<Client> {
  const withPassword = new URL(url);
  withPassword.password = password;
  const client = new Client({ connectionString: withPassword.toString(), application_name: 'pitr demo' });
  await client.connect();
  return client;
}

/**
 * The whole rehearsal on a throwaway cluster: find PostgreSQL, start it, create a shop, init, archive,
 * back up, run traffic, make an accidental DELETE, find it in the archive, restore the tables as they
 * were just before it into a side database, compare, copy the rows back. Every pitr step runs the real
 * CLI. The cluster and its files are removed at the end, on error and on Ctrl-C, unless `keep`.
 * Returns the exit status: 0, or 130 when interrupted.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { out, signal, keep } = options;
  const say = new DemoNarrator(out);
  say.title('pitr demo: a complete recovery rehearsal on a throwaway PostgreSQL on this machine');
  say.title(keep ? 'With --keep, it is left running at the end.' : 'Everything it creates is removed at the end (--keep leaves it).');

  say.step('Find the PostgreSQL server programs');
  const binaries = findPgBinaries(options.search);
  say.say(`PostgreSQL ${binaries.version} in ${binaries.binDir} (found through ${binaries.foundBy})`);
  const user = (options.user ?? serverUser)();
  if (user.name) say.say(`running as root: initdb, pg_ctl and postgres run as the "${user.name}" user (runuser -u ${user.name} --), the server refuses root`);

  const baseDir = mkdtempSync(path.join(tmpdir(), 'pitr-demo-'));
  chmodSync(baseDir, 0o700);
  user.own(baseDir);
  const repoDir = path.join(baseDir, 'repo');
  const archiverLog = path.join(baseDir, 'archiver.log');
  const password = randomBytes(12).toString('base64url');
  const pgDump = path.join(binaries.binDir, 'pg_dump');
  const cli = new PitrCli(
    childEnvironment(options.env ?? process.env, {
      PGPASSWORD: password,
      // the commands' JSON logs on stderr stay quiet unless something is wrong
      PITR_LOG_LEVEL: 'warn',
      ...(existsSync(pgDump) ? { PITR_PG_DUMP: pgDump } : {}),
    }),
  );
  let cluster: ThrowawayCluster | undefined;
  let archiver: PitrChild | undefined;
  const clients: Client[] = [];
  let cleaned = false;
  // A second Ctrl-C exits the process at once: stop the server and remove its files even then.
  const onExit = (): void => {
    cli.killAll();
    if (keep || cleaned) return;
    cluster?.stopNow();
    rmSync(baseDir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  const pitr = async (args: string[], accept: number[] = [0]): Promise<PitrRun> => {
    say.command(['pitr', ...args]);
    const result = await cli.run(args, signal);
    signal.throwIfAborted();
    say.output(result.stdout + result.stderr);
    if (result.code === null || !accept.includes(result.code))
      throw new PitrError(kindOfExitCode(result.code), `pitr ${args[0]} exited with status ${result.code ?? 'killed'} during the demo`, 'see its output above');
    return result;
  };

  try {
    say.step('Start a throwaway PostgreSQL');
    cluster = await ThrowawayCluster.create(binaries, user, baseDir, password);
    say.say(`initdb, then started: ${cluster.describe()}`);
    say.say(`its superuser password is random; the commands below find it in PGPASSWORD:`);
    say.command(['export', `PGPASSWORD=${password}`]);
    const source = cluster.url('shop');

    say.step('Create a small shop database: customers, orders (key from a sequence), order_items');
    const admin = await connect(cluster.url('postgres'), password);
    clients.push(admin);
    await admin.query('CREATE DATABASE shop');
    const schemaFile = path.join(baseDir, 'shop.sql');
    writeFileSync(schemaFile, SHOP_SCHEMA_SQL);
    say.command(['psql', cluster.url('postgres'), '-c', 'CREATE DATABASE shop']);
    say.command(['psql', source, '-f', schemaFile]);
    const shop = await connect(source, password);
    clients.push(shop);
    await shop.query(SHOP_SCHEMA_SQL);
    say.say(countsText(await tableCounts(shop)));

    say.step('Prepare the source for archiving: publication, replication slot, DDL capture');
    await pitr(['init', '--source', source, '--repo', repoDir]);

    say.step('Start the archiver (it runs until stopped)');
    const archiveArgs = ['archive', '--source', source, '--repo', repoDir];
    say.command(['pitr', ...archiveArgs], `its JSON log goes to ${archiverLog}`);
    archiver = cli.start(archiveArgs, archiverLog);
    await waitArchiverStreaming(shop, SLOT, archiver, archiverLog, signal);
    say.say(`archiver streaming (pid ${archiver.child.pid ?? '?'}): every committed change goes to ${repoDir}`);

    say.step('Take a base backup, aligned to a position of the change stream');
    await pitr(['backup', '--source', source, '--repo', repoDir]);

    say.step(`Run some traffic: ${TRAFFIC} transactions (checkouts, orders moving to paid and shipped)`);
    await runTraffic(shop, TRAFFIC);
    say.say(countsText(await tableCounts(shop)));

    say.step('The accident: someone means to delete the cancelled orders');
    const before = await fingerprints(shop);
    const deletedIds = (await shop.query<{ id: string }>(`SELECT id FROM orders WHERE ${ACCIDENT_PREDICATE} ORDER BY id`)).rows.map((r) => Number(r.id));
    const deletedRows = `id IN (${deletedIds.join(',') || 'NULL'})`;
    const deletedBefore = await fingerprint(shop, 'public.orders', deletedRows);
    say.command(['psql', source, '-c', ACCIDENT_SQL], "meant: status = 'cancelled'");
    const accident = await runAccident(shop);
    say.output(`DELETE ${accident.orders}`);
    say.say(`${accident.orders} orders deleted, and their ${accident.items} order_items with them (ON DELETE CASCADE), in transaction ${accident.xid}`);
    await runTraffic(shop, TRAFFIC_AFTER, TRAFFIC);
    say.say(`the shop goes on: ${TRAFFIC_AFTER} more transactions; ${countsText(await tableCounts(shop))}`);

    say.step('Check the archive is current (what monitoring runs)');
    const lsn = await waitArchivedUpToNow(shop, SLOT, archiver, archiverLog, signal);
    say.say(`the slot's confirmed position reached ${lsn}: everything committed is stored`);
    await pitr(['status', '--source', source, '--repo', repoDir], [0, 1, 2]);

    say.step('Find the delete in the archive');
    const found = await pitr(['log', '--repo', repoDir, '--op', 'delete', '--table', 'public.orders']);
    const xids = [...found.stdout.matchAll(/ xid (\d+) /g)].map((m) => Number(m[1]));
    if (xids.length !== 1 || xids[0] !== accident.xid)
      throw new PitrError(
        'NotFound',
        `pitr log found ${xids.length} delete transaction(s) on public.orders, expected transaction ${accident.xid}`,
        `see ${repoDir}`,
      );
    say.say(`one transaction: xid ${accident.xid}; it deleted from orders and order_items`);

    say.step(`Restore the tables as they were just before transaction ${accident.xid}, into a side database`);
    say.say('orders and order_items, and customers, which orders references by foreign key (so the side database keeps it)');
    const sideUrl = cluster.url(SIDE_DATABASE);
    await pitr(['restore', '--repo', repoDir, '--target', sideUrl, '--to', `xid:${accident.xid}`, '--exclusive', '--tables', RESTORE_TABLES.join(',')]);

    say.step('Compare the side database with the source just before the delete');
    const side = await connect(sideUrl, password);
    clients.push(side);
    const restored = await fingerprints(side);
    const now = await tableCounts(shop);
    const rows: string[][] = [['table', 'before the delete', 'shop now', 'restored', 'restored = before the delete']];
    for (const [i, table] of SHOP_TABLES.entries()) {
      const b = before[i] as TableFingerprint;
      const r = restored[i] as TableFingerprint;
      rows.push([table, String(b.rows), String(now[table.replace('public.', '')] ?? '?'), String(r.rows), b.md5 === r.md5 ? 'yes, every row' : 'NO']);
    }
    say.table(rows);
    say.blank();
    say.say(`a few of the deleted orders, from ${SIDE_DATABASE}:`);
    say.table(await sampleDeletedOrders(side, 4));
    if (before.some((b, i) => b.md5 !== restored[i]?.md5))
      throw new PitrError(
        'Integrity',
        `the restored tables differ from the source just before transaction ${accident.xid}`,
        `compare ${sideUrl} with the archive`,
      );

    say.step('Put the deleted rows back into the shop, from the side database');
    const selectOrders = `SELECT * FROM orders WHERE ${ACCIDENT_PREDICATE}`;
    const selectItems = `SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.${ACCIDENT_PREDICATE}`;
    say.pipe(['psql', sideUrl, '-c', `\\copy (${selectOrders}) TO STDOUT`], ['psql', source, '-c', '\\copy orders FROM STDIN']);
    const orders = await copyRows(side, selectOrders, shop, 'orders');
    say.pipe(['psql', sideUrl, '-c', `\\copy (${selectItems}) TO STDOUT`], ['psql', source, '-c', '\\copy order_items FROM STDIN']);
    const items = await copyRows(side, selectItems, shop, 'order_items');
    const back = await fingerprint(shop, 'public.orders', deletedRows);
    say.say(`${orders} orders and ${items} order_items copied back; ${countsText(await tableCounts(shop))}`);
    say.say(`the ${deletedIds.length} deleted orders are in shop again, exactly as before the delete: ${back.md5 === deletedBefore.md5 ? 'yes' : 'NO'}`);
    if (back.md5 !== deletedBefore.md5)
      throw new PitrError('Integrity', 'the orders copied back differ from those deleted', `compare ${sideUrl} with ${source}`);

    say.step('Stop the archiver (SIGTERM: it stores what it holds, acknowledges, exits 0)');
    say.say(`archiver exited with status ${await archiver.stop()}`);
  } catch (error) {
    if (!signal.aborted) throw error;
    out.write('\ninterrupted\n');
    return 130;
  } finally {
    for (const client of clients.reverse()) await client.end().catch(() => undefined);
    if (archiver?.running) await archiver.stop();
    if (cluster && !keep) await cluster.stop().catch(() => cluster?.stopNow());
    if (!keep) rmSync(baseDir, { recursive: true, force: true });
    cleaned = true;
    process.off('exit', onExit);
    if (keep) printKept(say, baseDir, repoDir, cluster, password);
    else say.title(`\nremoved ${baseDir} and stopped its PostgreSQL`);
  }
  say.title(
    keep ? '\ndemo complete.' : '\ndemo complete: the delete was found in the archive, the tables restored as they were just before it, and the rows put back.',
  );
  return 0;
}

async function fingerprints(client: Client): Promise<TableFingerprint[]> {
  const result: TableFingerprint[] = [];
  for (const table of SHOP_TABLES) result.push(await fingerprint(client, table));
  return result;
}

function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([table, n]) => `${table} ${n}`)
    .join(', ');
}

function printKept(say: DemoNarrator, baseDir: string, repoDir: string, cluster: ThrowawayCluster | undefined, password: string): void {
  say.title(`\nkept: ${baseDir}`);
  if (!cluster) return;
  say.say(`PostgreSQL runs on 127.0.0.1:${cluster.port}; connect with:`);
  say.command(['export', `PGPASSWORD=${password}`]);
  say.command(['psql', cluster.url('shop')]);
  say.command(['psql', cluster.url(SIDE_DATABASE)]);
  say.command(['pitr', 'list', '--repo', repoDir]);
  say.say('stop and remove it with:');
  say.say(`$ ${cluster.pgCtlCommand('stop')} && rm -rf ${baseDir}`);
}
