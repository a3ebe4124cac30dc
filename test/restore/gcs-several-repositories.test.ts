import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GcsStorage } from '../../src/storage/gcs/gcs-storage';
import { LocalStorage } from '../../src/storage/local/local-storage';
import type { Storage } from '../../src/storage/storage';
import { caughtUp } from '../capture/source-helpers';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { PgCluster } from '../harness/pg-cluster';
import { PitrProcess, runPitr, type RunResult } from '../harness/pitr-process';
import { errorLines, shellLine } from './restore-helpers';

/**
 * Several gs:// repositories (and a local one) holding copies of one archive, copied object by object
 * through the storage API: restore reads each object from the first intact copy, through the real GCS
 * client and the fake server, and leaves no temporary copy behind.
 */
jest.setTimeout(180_000);

const PREFIX = 'shop';
const FIRST = 'pitr-first';
const SECOND = 'pitr-second';
let cluster: PgCluster;
let gcs: FakeGcsServer;
let expected: Fingerprints;
let localCopy: string;
const scratch: string[] = [];

const gcsStorage = (bucket: string): GcsStorage => new GcsStorage({ bucket, prefix: PREFIX, apiEndpoint: gcs.url });
const gsRepo = (bucket: string): string => `gs://${bucket}/${PREFIX}`;

async function copyRepository(from: Storage, to: Storage): Promise<number> {
  const { objects } = await from.list('');
  for (const o of objects) await to.put(o.name, { kind: 'buffer', data: await from.read(o.name) });
  return objects.length;
}

async function pitr(args: string[], expectedCode = 0, env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const all = [...args, '--gcs-endpoint', gcs.url, '--log-level', 'warn'];
  const result = await runPitr(all, env, 120_000);
  if (result.code !== expectedCode)
    throw new Error(
      `${shellLine(all)}\nexited ${result.code}, expected ${expectedCode}; stderr:\n${result.stderr.slice(-4000)}\nstdout:\n${result.stdout.slice(-2000)}`,
    );
  return result;
}

/** Names (relative to the repository) of the first bucket's segment data objects and backup chunks. */
const names = (bucket: string, under: string, suffix = ''): string[] =>
  gcs
    .objectNames(bucket, `${PREFIX}/${under}`)
    .filter((n) => n.endsWith(suffix))
    .map((n) => n.slice(PREFIX.length + 1));

beforeAll(async () => {
  cluster = await PgCluster.start();
  gcs = await FakeGcsServer.start({ pageSize: 7 });
  await cluster.psql(`
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE orders (id int PRIMARY KEY, item int);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;
    INSERT INTO orders SELECT g, g % 500 + 1 FROM generate_series(1, 800) g;`);
  const repo = gsRepo(FIRST);
  expect((await pitr(['init', '--source', cluster.url(), '--repo', repo])).code).toBe(0);
  const archiver = new PitrProcess([
    'archive',
    '--source',
    cluster.url(),
    '--repo',
    repo,
    '--gcs-endpoint',
    gcs.url,
    '--segment-age',
    '200ms',
    '--heartbeat',
    '1h',
  ]);
  await archiver.waitForState('streaming');
  expect((await pitr(['backup', '--source', cluster.url(), '--repo', repo])).code).toBe(0);
  for (let i = 1; i <= 5; i++) {
    const seen = archiver.lines.length;
    await cluster.psql(`UPDATE items SET v = 'round ${i}' WHERE id % 5 = ${i - 1}; INSERT INTO orders VALUES (${10_000 + i}, ${i});`);
    await archiver.waitFor((l) => l.event === 'segment_stored', 30_000, seen);
  }
  await caughtUp(cluster);
  expect(await archiver.stop()).toBe(0);
  expected = await fingerprintDatabase(cluster.url());
  expect(await copyRepository(gcsStorage(FIRST), gcsStorage(SECOND))).toBeGreaterThan(10);
  localCopy = mkdtempSync(path.join(tmpdir(), 'pitr-gcs-copy-'));
  scratch.push(localCopy);
  await copyRepository(gcsStorage(FIRST), new LocalStorage(localCopy));
}, 120_000);

afterAll(async () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  await cluster.destroy();
  await gcs.close();
});

test('restore exact from the copy alone, through the storage API', async () => {
  const result = await pitr(['restore', '--repo', gsRepo(SECOND), '--target', cluster.url('second_alone'), '--to', 'latest', '--json']);
  expect(await fingerprintDatabase(cluster.url('second_alone'))).toEqual(expected);
  expect((JSON.parse(result.stdout) as { repositories: unknown }).repositories).toEqual([
    { name: 'repo1', location: gsRepo(SECOND), objectsRead: expect.any(Number) as number },
  ]);
});

test('a repository answering 403 to everything but its identity is left out once, and restore is exact from the other', async () => {
  const denied = (r: { path: string }): boolean => r.path.includes(`/b/${FIRST}/`) && !r.path.endsWith('repository.json');
  gcs.resetLog();
  gcs.failNext(1_000_000, { status: 403, message: 'caller does not have storage.objects.get access' }, denied);
  try {
    const result = await pitr([
      'restore',
      '--repo',
      `${gsRepo(FIRST)}?name=eu`,
      '--repo',
      `${gsRepo(SECOND)}?name=us`,
      '--target',
      cluster.url('denied_first'),
      '--to',
      'latest',
      '--json',
    ]);
    expect(await fingerprintDatabase(cluster.url('denied_first'))).toEqual(expected);
    const warnings = errorLines(result).filter((l) => l.startsWith('pitr: warning: '));
    expect(warnings).toEqual([
      expect.stringMatching(
        /^pitr: warning: eu \(gs:\/\/pitr-first\/shop\): cannot (list|read|stat) .*permission denied.*; not using this repository for the rest of this command \(reading from us\)$/,
      ),
    ]);
    expect(errorLines(result)).toContainEqual(
      expect.stringMatching(/^pitr: read from us \(gs:\/\/pitr-second\/shop\); left out after an error: eu \(gs:\/\/pitr-first\/shop\)$/),
    );
    const used = (JSON.parse(result.stdout) as { repositories: { name: string; objectsRead: number }[] }).repositories;
    expect(used.map((u) => [u.name, u.objectsRead > 0])).toEqual([
      ['eu', false],
      ['us', true],
    ]);
    // asked once (or by the few reads already under way when the first answer came), not once per object
    const refused = gcs.requests.filter((r) => r.fault !== undefined).length;
    const servedBySecond = gcs.requests.filter((r) => r.path.includes(`/b/${SECOND}/`)).length;
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThanOrEqual(16);
    expect(servedBySecond).toBeGreaterThan(refused * 2);
  } finally {
    gcs.clearFaults();
  }
});

test('a repository unreachable after the retries is left out once, and log reads the other without retrying it per object', async () => {
  const unreachable = (r: { path: string }): boolean => r.path.includes(`/b/${FIRST}/`) && !r.path.endsWith('repository.json');
  const intact = JSON.parse((await pitr(['log', '--repo', gsRepo(SECOND), '--json'])).stdout) as { entries: unknown[] };
  gcs.resetLog();
  gcs.failNext(1_000_000, { status: 503, message: 'Service Unavailable' }, unreachable);
  try {
    const result = await pitr(['log', '--repo', `${gsRepo(FIRST)}?name=eu`, '--repo', `${gsRepo(SECOND)}?name=us`, '--json']);
    expect((JSON.parse(result.stdout) as { entries: unknown[] }).entries).toEqual(intact.entries);
    const warnings = errorLines(result).filter((l) => l.startsWith('pitr: warning: '));
    expect(warnings).toEqual([
      expect.stringMatching(
        /^pitr: warning: eu \(gs:\/\/pitr-first\/shop\): cannot .* failed after 8 attempts: .*; not using this repository for the rest of this command \(reading from us\)$/,
      ),
    ]);
    // one round of retries (or a few at once, for the reads already under way), not one per object
    const refused = gcs.requests.filter((r) => r.fault !== undefined).length;
    expect(refused).toBeGreaterThanOrEqual(8);
    expect(refused).toBeLessThanOrEqual(8 * 16);
    expect(gcs.requests.filter((r) => r.path.includes(`/b/${SECOND}/`)).length).toBeGreaterThan(10);
  } finally {
    gcs.clearFaults();
  }
});

test('restore exact from two damaged gs:// copies and a local one, with no temporary copy left behind', async () => {
  const segments = names(FIRST, 'segments/', '.lz4');
  const chunks = names(FIRST, 'backups/').filter((n) => n.includes('/data/'));
  expect(segments.length).toBeGreaterThanOrEqual(4);
  const flipped = (data: Buffer): Buffer => {
    const copy = Buffer.from(data);
    const at = Math.floor(copy.length / 2);
    copy[at] = (copy[at] as number) ^ 0x01;
    return copy;
  };
  const [s0, s1, s2, s3] = segments.slice(-4) as [string, string, string, string];
  // first: one data object missing, one rewritten with damaged bytes (digests to match: only sha256 tells),
  // one damaged under its old digests (the client's download check tells), a manifest damaged, a chunk missing
  gcs.deleteObject(FIRST, `${PREFIX}/${s0}`);
  const original = gcs.getObject(FIRST, `${PREFIX}/${s1}`)?.data as Buffer;
  gcs.deleteObject(FIRST, `${PREFIX}/${s1}`);
  gcs.putObjectRaw(FIRST, `${PREFIX}/${s1}`, flipped(original));
  gcs.corrupt(FIRST, `${PREFIX}/${s2}`);
  gcs.corrupt(FIRST, `${PREFIX}/${s3.replace(/\.lz4$/, '.json')}`);
  gcs.deleteObject(FIRST, `${PREFIX}/${chunks[0] as string}`);
  // second: damaged where the first is intact, and where the first is damaged too (the local copy has it)
  gcs.corrupt(SECOND, `${PREFIX}/${chunks[1] as string}`);
  gcs.deleteObject(SECOND, `${PREFIX}/${s1}`);

  const spool = mkdtempSync(path.join(tmpdir(), 'pitr-gcs-spool-'));
  scratch.push(spool);
  const result = await pitr(
    [
      'restore',
      '--repo',
      `${gsRepo(FIRST)}?name=eu`,
      '--repo',
      `${gsRepo(SECOND)}?name=us&storage-class=NEARLINE`,
      '--repo',
      `${localCopy}?name=disk`,
      '--target',
      cluster.url('from_all'),
      '--to',
      'latest',
      '--json',
    ],
    0,
    { TMPDIR: spool },
  );
  expect(await fingerprintDatabase(cluster.url('from_all'))).toEqual(expected);
  const used = (JSON.parse(result.stdout) as { repositories: { name: string; objectsRead: number }[] }).repositories;
  expect(used.map((u) => u.name)).toEqual(['eu', 'us', 'disk']);
  expect(used.every((u) => u.objectsRead > 0)).toBe(true);
  expect(errorLines(result)).toContainEqual(
    `pitr: warning: eu (${gsRepo(FIRST)}): ${s1} is damaged: its sha256 does not match its manifest; trying the next repository`,
  );
  expect(errorLines(result)).toContainEqual(
    expect.stringMatching(/^pitr: read from eu \(gs:\/\/pitr-first\/shop\): \d+ objects, us \(gs:\/\/pitr-second\/shop\): \d+ objects, disk \(/),
  );
  expect(readdirSync(spool)).toEqual([]);

  const listed = JSON.parse(
    (await pitr(['list', '--repo', `${gsRepo(FIRST)}?name=eu`, '--repo', `${gsRepo(SECOND)}?name=us&storage-class=NEARLINE`, '--json'])).stdout,
  ) as { repositories: { name: string; storageClass: string | null; storageClassFrom: string | null; objects: number }[] };
  // the class: the setting given, else what the objects report; objects: segment data and backup objects,
  // as each repository's own manifests record them, or (eu: a damaged manifest) as a listing finds them
  const dataObjects = (bucket: string): number =>
    [...names(bucket, 'segments/', '.lz4'), ...names(bucket, 'backups/').filter((n) => /\/(data|schema)\//.test(n))].length;
  expect(listed.repositories.map((r) => [r.name, r.storageClass, r.storageClassFrom, r.objects])).toEqual([
    ['eu', 'STANDARD', 'objects', dataObjects(FIRST)],
    // us lost one segment's data: its manifests still record it (what verify finds missing)
    ['us', 'NEARLINE', 'setting', dataObjects(SECOND) + 1],
  ]);
});
