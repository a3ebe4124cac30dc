import type { InsertMessage } from '../../src/archive/pgoutput-decoder';
import { Repository } from '../../src/archive/repository';
import { readTransactions } from '../../src/archive/transaction-reader';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr } from '../harness/pitr-process';
import { valueText } from '../harness/archive-fixture';
import { pollUntil } from '../harness/poll-until';
import { caughtUp } from '../capture/source-helpers';

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

/** Every stored segment manifest's predecessor is stored too: the chain has no hole a restart would skip. */
function manifestsWithoutHoles(): void {
  const manifests = gcs.objectNames('pitr-test', 'shop/archive/segments/').filter((n) => n.endsWith('.json'));
  const names = new Set(manifests.map((n) => n.slice('shop/archive/'.length, -'.json'.length)));
  for (const name of manifests) {
    const manifest = JSON.parse((gcs.getObject('pitr-test', name)?.data ?? Buffer.from('{}')).toString('utf8')) as { previous: { name: string } | null };
    if (manifest.previous) expect({ segment: name, previousStored: names.has(manifest.previous.name) }).toEqual({ segment: name, previousStored: true });
  }
}

test('kill -9 while one upload hangs and the next segment is stored: no manifest after a hole, and the restart loses nothing', async () => {
  const args = ['archive', '--source', cluster.url(), '--repo', REPO, '--gcs-endpoint', gcs.url, '--segment-age', '200ms', '--heartbeat', '1h'];
  const first = new PitrProcess(args);
  archiver = first;
  await first.waitForState('streaming');
  const dataObjects = (): number => gcs.objectNames('pitr-test', 'shop/archive/segments/').filter((n) => n.endsWith('.lz4')).length;
  const before = dataObjects();
  gcs.failNext(1, { kind: 'timeout' }, on.uploads); // the next upload never gets an answer
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(301, 400) g");
  // the hanging upload has started (the segment of that insert, or a lease renewal): what follows is in later segments
  await pollUntil(
    () => Promise.resolve(gcs.requests.some((r) => r.fault === 'timeout')),
    (hung) => hung,
    'the upload left hanging',
  );
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(401, 500) g");
  await cluster.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(501, 600) g");
  // a later segment's data object is stored while the hanging one is not
  await pollUntil(
    () => Promise.resolve(dataObjects()),
    (n) => n >= before + 1,
    'a later segment’s data object',
  );
  await new Promise((r) => setTimeout(r, 500)); // room for a manifest that must not come
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('close', r));
  manifestsWithoutHoles();

  gcs.clearFaults();
  const second = new PitrProcess(args);
  archiver = second;
  await second.waitForState('streaming');
  await caughtUp(cluster);
  expect(await second.stop('SIGTERM')).toBe(0);
  manifestsWithoutHoles();
  expect(await archivedIds()).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
});
