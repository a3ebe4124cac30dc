import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import { Repository } from '../../src/archive/repository';
import { readTransactions } from '../../src/archive/transaction-reader';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { valueText } from '../harness/archive-fixture';

let cluster: PgCluster;
let gcs: FakeGcsServer;
let archiver: PitrProcess | undefined;
const REPO = 'gs://pitr-test/shop/archive';

beforeAll(async () => {
  cluster = await PgCluster.start();
  gcs = await FakeGcsServer.start();
  await cluster.query('CREATE TABLE items (id int PRIMARY KEY, name text)');
  const init = await runPitr(['init', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url]);
  expect(init.stderr).not.toMatch(/error/);
  expect(init.code).toBe(0);
});

afterAll(async () => {
  archiver?.child.kill('SIGKILL');
  await cluster.destroy();
  await gcs.close();
});

async function confirmedFlush(): Promise<string> {
  const rows = await cluster.query<{ lsn: string }>("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'pitr'");
  return (rows[0] as { lsn: string }).lsn;
}

/** Where WAL is being inserted: past every commit made so far (the write position may still be behind them). */
async function insertLsn(): Promise<string> {
  return ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn'))[0] as { lsn: string }).lsn;
}

async function currentLsn(): Promise<string> {
  return ((await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0] as { lsn: string }).lsn;
}

async function lsnLess(a: string, b: string): Promise<boolean> {
  return ((await cluster.query<{ less: boolean }>('SELECT $1::pg_lsn < $2::pg_lsn AS less', [a, b]))[0] as { less: boolean }).less;
}

async function archivedIds(): Promise<number[]> {
  const repo = new Repository(new GcsStorage({ bucket: 'pitr-test', prefix: 'shop/archive', apiEndpoint: gcs.url }));
  const ids: number[] = [];
  for await (const txn of readTransactions(repo))
    for (const m of txn.messages)
      if (m.tag === 'I' && txn.relations.get(m.relationId)?.name === 'items') ids.push(Number(valueText((m as InsertMessage).newTuple[0])));
  return ids;
}

test('archives into GCS; while uploads fail the slot stays put, and afterwards nothing is lost', async () => {
  archiver = new PitrProcess(['archive', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--segment-age', '200ms', '--heartbeat', '1h']);
  await archiver.waitForState('streaming');
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g");
  await archiver.waitFor((l) => l.event === 'segment_stored');

  gcs.failNext(1_000_000, { status: 503 }, on.uploads);
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(101, 200) g");
  const afterFailedInsert = await insertLsn();
  await archiver.waitFor((l) => l.event === 'upload_retry');
  await new Promise((r) => setTimeout(r, 1500));
  // the transaction whose segment cannot be stored is not acknowledged: the slot stays before its commit
  const flushed = await confirmedFlush();
  if (!(await lsnLess(flushed, afterFailedInsert)))
    console.log(`confirmed ${flushed}, after the failed insert ${afterFailedInsert}\n${archiver.stderr.slice(-8000)}`);
  expect(await lsnLess(flushed, afterFailedInsert)).toBe(true);

  gcs.clearFaults();
  gcs.failNext(2, { kind: 'drop' }, on.uploads);
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(201, 300) g");
  const end = await currentLsn();
  for (let i = 0; i < 300; i++) {
    const rows = await cluster.query<{ ok: boolean }>("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'pitr'", [
      end,
    ]);
    if (rows[0]?.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const stopped = await Promise.race([archiver.stop('SIGTERM'), new Promise((r) => setTimeout(() => r('hung'), 20000))]);
  if (stopped !== 0) console.log(archiver.stderr.slice(-6000));
  expect(stopped).toBe(0);
  const ids = await archivedIds();
  expect(ids).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  expect(gcs.objectNames('pitr-test', 'shop/archive/').some((n) => n.endsWith('repository.json'))).toBe(true);
});
