/**
 * What `pitr list` and `pitr log --since` read does not grow with the archive: on the fake GCS server,
 * an archive ten times longer costs the same number of requests (the index's catalog, the pages
 * asked for, the tail), and reads of many manifests never run more than 16 at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeCheckedJson } from '../../src/archive/checked-json';
import { rebuildIndex } from '../../src/archive/index-builder';
import { IDENTITY_OBJECT, Repository } from '../../src/archive/repository';
import { formatUnixMicros } from '../../src/pg/pg-time';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { writeHeartbeatSegments } from '../harness/heartbeat-segments';
import { runPitr } from '../harness/pitr-process';

const BUCKET = 'pitr-reads';
const identity = { systemIdentifier: '7310000000000000001', database: 'shop' };
const FIRST_TIME = 1_790_000_000_000_000n;

let gcs: FakeGcsServer;
let spool: string;

beforeAll(async () => {
  gcs = await FakeGcsServer.start();
  spool = mkdtempSync(path.join(tmpdir(), 'pitr-reads-'));
});

afterAll(async () => {
  await gcs?.close();
  if (spool) rmSync(spool, { recursive: true, force: true });
});

/** An archive of `count` heartbeat segments under `prefix`, indexed as the archiver indexes it. */
async function archive(prefix: string, count: number): Promise<void> {
  gcs.putObjectRaw(BUCKET, `${prefix}/${IDENTITY_OBJECT}`, encodeCheckedJson({ format: 2, ...identity, createdAt: '2026-12-01T00:00:00.000Z' }));
  const manifests = await writeHeartbeatSegments({
    previous: null,
    identity,
    firstLsn: 0x1000000n,
    firstTime: FIRST_TIME,
    count,
    spoolDir: spool,
    store: async (name, data) => void gcs.putObjectRaw(BUCKET, `${prefix}/${name}`, data),
  });
  const repo = new Repository(new GcsStorage({ bucket: BUCKET, prefix, apiEndpoint: gcs.url }));
  await rebuildIndex(repo, identity, manifests);
}

/** GET requests (listings, metadata and downloads) one command makes, and its output. */
async function requestsOf(args: string[]): Promise<{ gets: number; stdout: string }> {
  gcs.resetLog();
  const result = await runPitr([...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn']);
  expect(result.code).toBe(0);
  return { gets: gcs.count((r) => r.method === 'GET'), stdout: result.stdout };
}

test('list and log --since read the same number of objects for 300 and for 3,000 segments', async () => {
  await archive('short', 300);
  await archive('long', 3000);
  const since = (count: number): string => formatUnixMicros(FIRST_TIME + BigInt(count - 5) * 100n);
  const short = await requestsOf(['list', '--repo', `gs://${BUCKET}/short`, '--json']);
  const long = await requestsOf(['list', '--repo', `gs://${BUCKET}/long`, '--json']);
  expect((JSON.parse(short.stdout) as { segments: { count: number } }).segments.count).toBe(300);
  expect((JSON.parse(long.stdout) as { segments: { count: number } }).segments.count).toBe(3000);
  // the catalog and the tail (fewer than 16 manifests), plus a few listings: not a read per segment
  expect(long.gets).toBeLessThanOrEqual(short.gets + 16);
  expect(long.gets).toBeLessThan(40);

  const shortLog = await requestsOf(['log', '--repo', `gs://${BUCKET}/short`, '--since', since(300), '--json']);
  const longLog = await requestsOf(['log', '--repo', `gs://${BUCKET}/long`, '--since', since(3000), '--json']);
  expect((JSON.parse(longLog.stdout) as { entries: unknown[] }).entries).toHaveLength(5);
  expect(longLog.gets).toBeLessThanOrEqual(shortLog.gets + 16);
  expect(longLog.gets).toBeLessThan(60);
});

test('the newest segment is found with the same requests for 300 and for 3,000 segments', async () => {
  const newestOf = async (prefix: string): Promise<{ name: string | undefined; gets: number }> => {
    gcs.resetLog();
    const repo = new Repository(new GcsStorage({ bucket: BUCKET, prefix, apiEndpoint: gcs.url }));
    const name = (await repo.latestSegment())?.name;
    return { name, gets: gcs.count((r) => r.method === 'GET') };
  };
  const lastManifest = (prefix: string): string | undefined =>
    gcs
      .objectNames(BUCKET, `${prefix}/segments/`)
      .filter((n) => n.endsWith('.json'))
      .pop()
      ?.slice(prefix.length + 1)
      .replace(/\.json$/, '');
  const short = await newestOf('short');
  const long = await newestOf('long');
  expect([short.name, long.name]).toEqual([lastManifest('short'), lastManifest('long')]);
  expect(long.gets).toBe(short.gets);
  expect(long.gets).toBeLessThan(8);
});

test('without an index, list reads every manifest, at most 16 at a time, with the same answer', async () => {
  const indexed = await requestsOf(['list', '--repo', `gs://${BUCKET}/long`, '--json']);
  for (const name of gcs.objectNames(BUCKET, 'long/index/')) gcs.deleteObject(BUCKET, name);
  let inFlight = 0;
  let most = 0;
  const server = gcs as unknown as { handle(req: unknown, res: { on(e: string, f: () => void): void }): Promise<void> };
  const handle = server.handle.bind(gcs);
  server.handle = async (req, res) => {
    inFlight++;
    most = Math.max(most, inFlight);
    res.on('close', () => inFlight--);
    return handle(req, res);
  };
  const scanned = await requestsOf(['list', '--repo', `gs://${BUCKET}/long`, '--json']);
  // the same answer; only how many objects it read differs
  const answer = (stdout: string): unknown => ({ ...(JSON.parse(stdout) as Record<string, unknown>), repositories: undefined });
  expect(answer(scanned.stdout)).toEqual(answer(indexed.stdout));
  expect(scanned.gets).toBeGreaterThan(3000);
  expect(most).toBeLessThanOrEqual(16 + 1);
  // the newest segment, found by listing instead
  const repo = new Repository(new GcsStorage({ bucket: BUCKET, prefix: 'long', apiEndpoint: gcs.url }));
  expect((await repo.latestSegment())?.name).toBe(
    gcs
      .objectNames(BUCKET, 'long/segments/')
      .filter((n) => n.endsWith('.json'))
      .pop()
      ?.slice('long/'.length)
      .replace(/\.json$/, ''),
  );
});
