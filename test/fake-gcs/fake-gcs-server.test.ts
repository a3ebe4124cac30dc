import { createHash } from 'node:crypto';
import { Storage } from '@google-cloud/storage';
import { crc32cBase64 } from './crc32c';
import { FakeGcsServer, on } from './fake-gcs-server';
import { ObjectStore } from './object-store';

const BUCKET = 'bkt';

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

/** The real client against the fake: no auth for a custom endpoint, no client-side retries. */
function client(server: FakeGcsServer): Storage {
  return new Storage({ apiEndpoint: server.url, projectId: 'test', useAuthWithCustomEndpoint: false, retryOptions: { autoRetry: false } });
}

function statusOf(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

describe('fake GCS server', () => {
  let server: FakeGcsServer;
  let storage: Storage;

  beforeEach(async () => {
    server = await FakeGcsServer.start({ pageSize: 2 });
    storage = client(server);
  });
  afterEach(async () => {
    await server.close();
  });

  test('crc32c matches the published check value', () => {
    // CRC-32C of "123456789" is 0xE3069283.
    expect(Buffer.from(crc32cBase64(Buffer.from('123456789')), 'base64').toString('hex')).toBe('e3069283');
  });

  test('multipart upload, metadata, download and range', async () => {
    const data = Buffer.from('hello, fake gcs');
    const file = storage.bucket(BUCKET).file('dir/a.bin');
    await file.save(data, { resumable: false, validation: false, metadata: { md5Hash: md5(data) }, preconditionOpts: { ifGenerationMatch: 0 } });
    expect(server.getObject(BUCKET, 'dir/a.bin')?.data).toEqual(data);
    const [meta] = await file.getMetadata();
    expect(meta.size).toBe(String(data.length));
    expect(meta.md5Hash).toBe(md5(data));
    expect(meta.crc32c).toBe(crc32cBase64(data));
    const [whole] = await file.download(); // the client validates the crc32c the server sends
    expect(whole).toEqual(data);
    const [part] = await file.download({ start: 7, end: 9 });
    expect(part.toString()).toBe('fak');
  });

  test('create-only upload of an existing name is refused with 412', async () => {
    server.putObjectRaw(BUCKET, 'x', 'one');
    const file = storage.bucket(BUCKET).file('x');
    const error: unknown = await file
      .save(Buffer.from('two'), { resumable: false, validation: false, preconditionOpts: { ifGenerationMatch: 0 } })
      .catch((e: unknown) => e);
    expect(statusOf(error)).toBe(412);
    expect(server.getObject(BUCKET, 'x')?.data.toString()).toBe('one');
  });

  test('a wrong client md5 is rejected with 400 and nothing is stored', async () => {
    const file = storage.bucket(BUCKET).file('bad');
    const error: unknown = await file
      .save(Buffer.from('payload'), { resumable: false, validation: false, metadata: { md5Hash: md5(Buffer.from('other')) } })
      .catch((e: unknown) => e);
    expect(statusOf(error)).toBe(400);
    expect(server.getObject(BUCKET, 'bad')).toBeUndefined();
  });

  test('resumable upload in chunks, with a status query after a dropped chunk', async () => {
    const data = Buffer.alloc(3 * 256 * 1024 + 1000, 7);
    const file = storage.bucket(BUCKET).file('big');
    let uri: string | undefined;
    server.failNext(1, { kind: 'drop' }, (r) => on.resumableChunks(r) && server.count(on.resumableChunks) > 1);
    const options = { resumable: true, validation: false, chunkSize: 256 * 1024, metadata: { md5Hash: md5(data) }, preconditionOpts: { ifGenerationMatch: 0 } };
    const first = file.createWriteStream(options).on('uri', (u: string) => (uri = u));
    await expect(new Promise((resolve, reject) => first.on('error', reject).on('finish', resolve).end(data))).rejects.toBeDefined();
    expect(uri).toBeDefined();
    const resumed = file.createWriteStream({ ...options, uri });
    await new Promise((resolve, reject) => resumed.on('error', reject).on('finish', resolve).end(data));
    expect(server.getObject(BUCKET, 'big')?.data.equals(data)).toBe(true);
    expect(server.requests.some((r) => r.method === 'PUT' && r.status === 308)).toBe(true);
  });

  test('listing pages through prefixes and objects', async () => {
    for (const name of ['a/1', 'a/2', 'b', 'c/x/y', 'd']) server.putObjectRaw(BUCKET, name, name);
    const [files, , response] = await storage.bucket(BUCKET).getFiles({ delimiter: '/', autoPaginate: false });
    // Page size 2 counts the folded prefix too: the first page is 'a/' and 'b'.
    expect(files.map((f) => f.name)).toEqual(['b']);
    expect((response as { prefixes?: string[] }).prefixes).toEqual(['a/']);
    const [all] = await storage.bucket(BUCKET).getFiles({ prefix: '' });
    expect(all.map((f) => f.name)).toEqual(['a/1', 'a/2', 'b', 'c/x/y', 'd']);
    expect(server.count(on.lists)).toBeGreaterThan(2);
  });

  test('an ordered walk lists what filtering the whole bucket would, page by page, as objects come and go', () => {
    const store = new ObjectStore();
    const alphabet = ['a', 'b', '/', 'é', 'z'];
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const word = (): string => Array.from({ length: 1 + random(5) }, () => alphabet[random(alphabet.length)]).join('');
    const names = new Set<string>();
    for (let round = 0; round < 400; round++) {
      const name = word();
      if (names.has(name) && random(3) === 0) {
        store.delete('b', name);
        names.delete(name);
      } else {
        store.put('b', name, Buffer.from(name));
        names.add(name);
      }
      const query = { prefix: random(2) ? '' : word().slice(0, 2), delimiter: random(2) ? '/' : undefined, startOffset: random(3) ? undefined : word() };
      const expected = new Set<string>();
      for (const n of names) {
        if (!n.startsWith(query.prefix)) continue;
        if (query.startOffset !== undefined && Buffer.compare(Buffer.from(n), Buffer.from(query.startOffset)) < 0) continue;
        const cut = query.delimiter ? n.indexOf('/', query.prefix.length) : -1;
        expected.add(cut >= 0 ? n.slice(0, cut + 1) : n);
      }
      const listed: string[] = [];
      let pageToken: string | undefined;
      do {
        const page = store.list('b', { ...query, pageToken, maxResults: 3 });
        listed.push(...page.items.map((o) => o.name), ...page.prefixes);
        pageToken = page.nextPageToken;
      } while (pageToken !== undefined);
      const order = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
      expect(listed.sort(order)).toEqual([...expected].sort(order));
    }
  });

  test('faults: injected status, drop and delete', async () => {
    server.putObjectRaw(BUCKET, 'f', 'data');
    const file = storage.bucket(BUCKET).file('f');
    server.failNext(1, { status: 503 }, on.metadata);
    expect(statusOf(await file.getMetadata().catch((e: unknown) => e))).toBe(503);
    server.failNext(1, { kind: 'drop' });
    await expect(file.getMetadata()).rejects.toBeDefined();
    await file.delete();
    expect(server.getObject(BUCKET, 'f')).toBeUndefined();
    expect(statusOf(await file.delete().catch((e: unknown) => e))).toBe(404);
    expect(server.requests.filter((r) => r.fault !== undefined).map((r) => r.fault)).toEqual(['status 503', 'drop']);
  });

  test('corrupt() keeps the recorded digests, so a validated download fails', async () => {
    server.putObjectRaw(BUCKET, 'rot', 'some bytes that will rot');
    server.corrupt(BUCKET, 'rot');
    await expect(storage.bucket(BUCKET).file('rot').download()).rejects.toThrow(/did not match/);
  });
});
