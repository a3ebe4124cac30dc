import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { isPitrError, PitrError } from '../../src/errors';
import { describe as describeError, isTransient, toPitrError } from '../../src/storage/gcs/gcs-errors';
import { GcsStorage, type GcsStorageOptions } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer, on, type RequestInfo } from '../fake-gcs/fake-gcs-server';

const BUCKET = 'pitr-test';
const PREFIX = 'repo/a';
const BIG = 9 * 1024 * 1024; // over the 8 MiB resumable threshold: two chunks of 8 MiB
/**
 * The request timeout of the tests that hang a request on purpose. The others keep the client's
 * generous default: under load an 8 MiB chunk can take longer than this to go up, and its retry then
 * finds the object the timed-out request did store ('identical' where 'created' is expected).
 */
const HUNG_REQUEST_TIMEOUT_MS = 400;

let server: FakeGcsServer;
let storage: GcsStorage;
let tmp: string;

function open(options: Partial<GcsStorageOptions> = {}): GcsStorage {
  return new GcsStorage({
    bucket: BUCKET,
    prefix: PREFIX,
    apiEndpoint: server.url,
    retry: { attempts: 4, baseDelayMs: 5, maxDelayMs: 20 },
    ...options,
  });
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

function stored(name: string): Buffer | undefined {
  return server.getObject(BUCKET, `${PREFIX}/${name}`)?.data;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function failure(promise: Promise<unknown>): Promise<PitrError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof PitrError)) throw new Error(`expected a PitrError, got ${String(error)}`);
  return error;
}

/** Resumable chunk PUTs and status queries. */
const uploadPuts = (r: RequestInfo): boolean => r.method === 'PUT' && on.uploads(r);
const sessionStarts = (r: RequestInfo): boolean => r.method === 'POST' && on.resumable(r);

beforeEach(async () => {
  server = await FakeGcsServer.start({ pageSize: 3 });
  storage = open();
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pitr-gcs-'));
});
afterEach(async () => {
  await server.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('put', () => {
  test('a small buffer is one multipart upload with a server-checked md5', async () => {
    const data = Buffer.from('segment bytes');
    expect(storage.location).toBe('gs://pitr-test/repo/a');
    await expect(storage.put('wal/000001', { kind: 'buffer', data })).resolves.toBe('created');
    expect(stored('wal/000001')).toEqual(data);
    expect(server.count(on.multipart)).toBe(1);
    expect(server.count(on.resumable)).toBe(0);
    await expect(storage.read('wal/000001')).resolves.toEqual(data);
    await expect(storage.stat('wal/000001')).resolves.toEqual({
      name: 'wal/000001',
      size: data.length,
      md5: md5(data),
      modifiedAt: expect.any(Date) as Date,
      storageClass: 'STANDARD',
    });
  });

  test('a small file is uploaded and, when consumed, removed', async () => {
    const file = path.join(tmp, 'small');
    await fs.writeFile(file, 'file bytes');
    await expect(storage.put('f/small', { kind: 'file', path: file, consume: true })).resolves.toBe('created');
    expect(stored('f/small')?.toString()).toBe('file bytes');
    expect(existsSync(file)).toBe(false);
  });

  test('a file over 8 MiB goes up resumably in chunks, and is kept unless consumed', async () => {
    const data = randomBytes(BIG);
    const file = path.join(tmp, 'big');
    await fs.writeFile(file, data);
    await expect(storage.put('base/big', { kind: 'file', path: file })).resolves.toBe('created');
    expect(stored('base/big')?.equals(data)).toBe(true);
    expect(server.count(sessionStarts)).toBe(1);
    expect(server.count(uploadPuts)).toBe(2);
    expect(existsSync(file)).toBe(true);
    expect((await storage.read('base/big')).equals(data)).toBe(true);
  });

  test('putting identical bytes again is a no-op returning identical', async () => {
    const data = Buffer.from('same');
    await storage.put('x', { kind: 'buffer', data });
    const generation = server.getObject(BUCKET, `${PREFIX}/x`)?.generation;
    await expect(storage.put('x', { kind: 'buffer', data })).resolves.toBe('identical');
    expect(server.getObject(BUCKET, `${PREFIX}/x`)?.generation).toBe(generation);
  });

  test('different bytes under an existing name are an integrity error and leave the original', async () => {
    await storage.put('x', { kind: 'buffer', data: Buffer.from('original') });
    const error = await failure(storage.put('x', { kind: 'buffer', data: Buffer.from('impostor') }));
    expect(error.kind).toBe('Integrity');
    expect(error.message).toBe('object x already exists in gs://pitr-test/repo/a with different content');
    expect(error.hint).toBeDefined();
    expect(stored('x')?.toString()).toBe('original');
  });

  test('create: a taken name is an answer, not an error, and the original stays', async () => {
    expect(await storage.create('lease/1.json', Buffer.from('mine'))).toBe('created');
    expect(await storage.create('lease/1.json', Buffer.from('mine'))).toBe('identical');
    expect(await storage.create('lease/1.json', Buffer.from('theirs'))).toBe('taken');
    expect(stored('lease/1.json')?.toString()).toBe('mine');
  });

  test("now() is the storage's clock: the time it gives a probe, which it removes again", async () => {
    await storage.put('x', { kind: 'buffer', data: Buffer.from('x') });
    const written = (await storage.stat('x'))?.modifiedAt as Date;
    server.getObject(BUCKET, `${PREFIX}/x`)?.created.setTime(written.getTime() - 3_600_000); // as if written an hour ago
    expect((await storage.now()).getTime() - ((await storage.stat('x'))?.modifiedAt as Date).getTime()).toBeGreaterThanOrEqual(3_600_000);
    expect(server.objectNames(BUCKET, `${PREFIX}/.probe/`)).toEqual([]);
  });

  test('bytes corrupted in transit are rejected by the server and sent again', async () => {
    server.failNext(1, { kind: 'tamper' }, on.multipart);
    const data = Buffer.from('fragile payload');
    await expect(storage.put('t', { kind: 'buffer', data })).resolves.toBe('created');
    expect(server.requests.filter(on.multipart).map((r) => r.status)).toEqual([400, 200]);
    expect(stored('t')).toEqual(data);
  });

  test('a corrupted resumable chunk poisons the session; the retry starts a new one', async () => {
    server.failNext(1, { kind: 'tamper' }, uploadPuts);
    const data = randomBytes(BIG);
    await expect(storage.put('big', { kind: 'buffer', data })).resolves.toBe('created');
    expect(server.count(sessionStarts)).toBe(2);
    expect(stored('big')?.equals(data)).toBe(true);
  });

  test('bytes that never match their md5 give an integrity error and store nothing', async () => {
    server.failNext(100, { kind: 'tamper' }, on.uploads);
    const error = await failure(storage.put('t', { kind: 'buffer', data: Buffer.from('payload') }));
    expect(error.kind).toBe('Integrity');
    expect(error.message).toMatch(/^upload of t in gs:\/\/pitr-test\/repo\/a was rejected 4 times: the bytes sent do not match their MD5/);
    expect(stored('t')).toBeUndefined();
  });
});

describe('read, stat, list, remove', () => {
  test('readStream serves byte ranges', async () => {
    const data = Buffer.from('0123456789abcdef');
    await storage.put('r', { kind: 'buffer', data });
    expect((await collect(storage.readStream('r', { start: 3, end: 6 }))).toString()).toBe('3456');
    expect((await collect(storage.readStream('r', { start: 10 }))).toString()).toBe('abcdef');
    expect(await collect(storage.readStream('r'))).toEqual(data);
  });

  test('absent objects: stat null, read and readStream NotFound, remove fine', async () => {
    await expect(storage.stat('nope')).resolves.toBeNull();
    const error = await failure(storage.read('nope'));
    expect(error.kind).toBe('NotFound');
    expect(error.message).toBe('object nope not found in gs://pitr-test/repo/a');
    const streamError = await failure(collect(storage.readStream('nope')));
    expect(streamError.kind).toBe('NotFound');
    await expect(storage.remove('nope')).resolves.toBeUndefined();
  });

  test('remove deletes', async () => {
    await storage.put('gone', { kind: 'buffer', data: Buffer.from('x') });
    await storage.remove('gone');
    expect(stored('gone')).toBeUndefined();
  });

  test('a corrupt stored object is an integrity error on read', async () => {
    await storage.put('rot', { kind: 'buffer', data: Buffer.from('bits that rot') });
    server.corrupt(BUCKET, `${PREFIX}/rot`);
    expect((await failure(storage.read('rot'))).kind).toBe('Integrity');
  });

  test('list follows pages, folds prefixes, and stays inside the repository', async () => {
    const names = ['wal/1', 'wal/2', 'wal/3', 'wal/4', 'base/b1/manifest', 'base/b2/manifest', 'top'];
    for (const name of names) server.putObjectRaw(BUCKET, `${PREFIX}/${name}`, name);
    server.putObjectRaw(BUCKET, 'repo/ab/wal/9', 'neighbour');
    server.putObjectRaw(BUCKET, 'repo/b/wal/1', 'other repo');

    const all = await storage.list('');
    expect(all.objects.map((o) => o.name)).toEqual([...names].sort());
    expect(all.prefixes).toEqual([]);
    expect(all.objects.find((o) => o.name === 'top')).toEqual({
      name: 'top',
      size: 3,
      md5: md5(Buffer.from('top')),
      modifiedAt: expect.any(Date) as Date,
      storageClass: 'STANDARD',
    });
    expect(server.count(on.lists)).toBe(3); // 7 objects, 3 per page

    const root = await storage.list('', { delimiter: '/' });
    expect(root.objects.map((o) => o.name)).toEqual(['top']);
    expect(root.prefixes).toEqual(['base/', 'wal/']);
    const base = await storage.list('base/', { delimiter: '/' });
    expect(base).toEqual({ objects: [], prefixes: ['base/b1/', 'base/b2/'] });
    expect((await storage.list('wal/')).objects.map((o) => o.name)).toEqual(['wal/1', 'wal/2', 'wal/3', 'wal/4']);
  });

  test('an empty prefix option puts objects at the bucket root', async () => {
    const rootStorage = open({ prefix: '' });
    expect(rootStorage.location).toBe('gs://pitr-test');
    await rootStorage.put('a/b', { kind: 'buffer', data: Buffer.from('x') });
    expect(server.getObject(BUCKET, 'a/b')).toBeDefined();
    expect((await rootStorage.list('a/')).objects.map((o) => o.name)).toEqual(['a/b']);
  });

  test('checkWritable writes and removes a probe', async () => {
    await storage.checkWritable();
    expect(server.requests.some((r) => on.multipart(r) && r.query.name?.startsWith(`${PREFIX}/.probe/`))).toBe(true);
    expect(server.objectNames(BUCKET)).toEqual([]);
  });

  test('checkWritable turns a permission error into a repository error with a hint', async () => {
    server.failNext(1, { status: 403, message: 'pitr@example.iam.gserviceaccount.com does not have storage.objects.create access' });
    const error = await failure(storage.checkWritable());
    expect(error.kind).toBe('Repository');
    expect(error.message).toMatch(/^repository gs:\/\/pitr-test\/repo\/a is not writable: .*permission denied/);
    expect(error.hint).toMatch(/roles\/storage.objectAdmin/);
  });

  test('STORAGE_EMULATOR_HOST is used when no endpoint is given', async () => {
    const saved = process.env.STORAGE_EMULATOR_HOST;
    process.env.STORAGE_EMULATOR_HOST = server.url;
    try {
      const viaEnv = open({ apiEndpoint: undefined });
      await viaEnv.put('env', { kind: 'buffer', data: Buffer.from('via env') });
      await expect(viaEnv.read('env')).resolves.toEqual(Buffer.from('via env'));
      await expect(viaEnv.stat('env')).resolves.toMatchObject({ size: 7 });
    } finally {
      if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
      else process.env.STORAGE_EMULATOR_HOST = saved;
    }
  });
});

describe('retries', () => {
  const data = Buffer.from('retried bytes');

  test('through 503s and dropped connections', async () => {
    server.failNext(2, { status: 503 }, on.multipart);
    server.failNext(1, { kind: 'drop' }, on.multipart);
    await expect(storage.put('r', { kind: 'buffer', data })).resolves.toBe('created');
    expect(server.count(on.multipart)).toBe(4);
    expect(stored('r')).toEqual(data);
  });

  test('through a hung request, which times out', async () => {
    storage = open({ timeoutMs: HUNG_REQUEST_TIMEOUT_MS });
    server.failNext(1, { kind: 'timeout' }, on.multipart);
    const started = Date.now();
    await expect(storage.put('r', { kind: 'buffer', data })).resolves.toBe('created');
    expect(Date.now() - started).toBeGreaterThanOrEqual(HUNG_REQUEST_TIMEOUT_MS - 50);
    expect(stored('r')).toEqual(data);
  });

  test('an upload that landed but whose answer was lost comes back identical', async () => {
    server.failNext(1, { kind: 'drop-after-commit' }, on.multipart);
    await expect(storage.put('r', { kind: 'buffer', data })).resolves.toBe('identical');
    expect(server.requests.filter(on.multipart).map((r) => r.status)).toEqual([undefined, 412]);
  });

  test('a resumable upload resumes its session after a dropped chunk', async () => {
    const big = randomBytes(BIG);
    server.failNext(1, { kind: 'drop' }, (r) => uploadPuts(r) && server.count(uploadPuts) === 2);
    await expect(storage.put('big', { kind: 'buffer', data: big })).resolves.toBe('created');
    expect(server.count(sessionStarts)).toBe(1);
    // first chunk, dropped second chunk, status query, second chunk again
    expect(server.requests.filter(uploadPuts).map((r) => r.status)).toEqual([308, undefined, 308, 200]);
    expect(stored('big')?.equals(big)).toBe(true);
  });

  test('a resumable upload survives a failed session start, a hung chunk and a lost final answer', async () => {
    const big = randomBytes(BIG);
    storage = open({ timeoutMs: HUNG_REQUEST_TIMEOUT_MS });
    server.failNext(1, { status: 503 }, sessionStarts);
    server.failNext(1, { kind: 'timeout' }, uploadPuts);
    server.failNext(1, { kind: 'drop-after-commit' }, (r) => uploadPuts(r) && server.count(uploadPuts) >= 4);
    await expect(storage.put('big', { kind: 'buffer', data: big })).resolves.toBe('identical');
    expect(server.pendingFaults()).toBe(0);
    expect(stored('big')?.equals(big)).toBe(true);
  });

  test('reads, lists and removes are retried too', async () => {
    await storage.put('a', { kind: 'buffer', data });
    for (const name of ['b', 'c', 'd', 'e']) server.putObjectRaw(BUCKET, `${PREFIX}/${name}`, name);
    server.failNext(2, { status: 503 }, on.downloads);
    await expect(storage.read('a')).resolves.toEqual(data);
    server.failNext(1, { kind: 'drop' }, on.downloads);
    expect(await collect(storage.readStream('a', { start: 2 }))).toEqual(data.subarray(2));
    server.failNext(1, { status: 429 }, (r) => on.lists(r) && r.query.pageToken !== undefined);
    expect((await storage.list('')).objects).toHaveLength(5);
    server.failNext(1, { kind: 'drop' }, on.metadata);
    await expect(storage.stat('a')).resolves.toMatchObject({ size: data.length });
    server.failNext(1, { kind: 'drop-after-commit' }, on.deletes);
    await expect(storage.remove('a')).resolves.toBeUndefined();
    expect(server.requests.filter(on.deletes).map((r) => r.status)).toEqual([undefined, 404]);
    expect(server.pendingFaults()).toBe(0);
  });

  test('after the attempts run out the error says what failed, without secrets', async () => {
    server.failNext(100, { status: 503, message: 'Backend unavailable' });
    const error = await failure(storage.put('r', { kind: 'buffer', data }));
    expect(error.kind).toBe('Connection');
    expect(error.message).toBe('upload of r in gs://pitr-test/repo/a failed after 4 attempts: Backend unavailable (HTTP 503)');
    expect(server.count(on.multipart)).toBe(4);
    expect(isPitrError(await failure(storage.read('r')), 'Connection')).toBe(true);
    expect(isPitrError(await failure(collect(storage.readStream('r'))), 'Connection')).toBe(true);
  });

  test('a resumable upload cut off every time fails cleanly and leaks no session URI', async () => {
    server.failNext(100, { kind: 'drop' }, uploadPuts);
    const error = await failure(storage.put('big', { kind: 'buffer', data: randomBytes(BIG) }));
    expect(error.kind).toBe('Connection');
    expect(error.message).toMatch(/^upload of big in gs:\/\/pitr-test\/repo\/a failed after 4 attempts: /);
    expect(error.message).not.toMatch(/upload_id|\?/);
    expect(error.cause).toBeUndefined();
  });
});

describe('error descriptions', () => {
  test('strip session URIs, tokens and URL credentials', () => {
    const leaky = Object.assign(
      new Error(
        'request to https://user:secret@storage.googleapis.com/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=ABC failed, reason: socket hang up; Authorization: Bearer ya29.token access_token=xyz',
      ),
      { code: 'ECONNRESET' },
    );
    const text = describeError(leaky);
    expect(text).toBe(
      'request to https://storage.googleapis.com/upload/storage/v1/b/b/o failed, reason: socket hang up; Authorization: Bearer [redacted] access_token=[redacted]',
    );
    expect(isTransient(leaky)).toBe(true);
  });

  test('map statuses to kinds', () => {
    const at = (e: unknown): string => toPitrError(e, 'upload of x', 'gs://b/p').kind;
    expect(at({ code: 401, message: 'Unauthorized' })).toBe('Connection');
    expect(at(new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication'))).toBe('Connection');
    expect(at({ code: 403, message: 'denied' })).toBe('Repository');
    expect(at({ code: 404, message: 'The specified bucket does not exist.' })).toBe('Repository');
    expect(at({ code: 400, message: 'Invalid argument' })).toBe('Repository');
  });
});
