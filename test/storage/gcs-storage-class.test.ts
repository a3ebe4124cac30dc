import { isPitrError } from '../../src/errors';
import { GcsStorage, type GcsStorageOptions } from '../../src/storage/gcs/gcs-storage';
import { FakeGcsServer, on } from '../fake-gcs/fake-gcs-server';

/** The storage class a GCS repository's objects are written in, through the real client and the fake server. */
const BUCKET = 'pitr-classes';
const PREFIX = 'repo';
const BIG = 9 * 1024 * 1024; // resumable: the class goes in the session start, not a multipart body

let server: FakeGcsServer;

const open = (options: Partial<GcsStorageOptions> = {}): GcsStorage =>
  new GcsStorage({ bucket: BUCKET, prefix: PREFIX, apiEndpoint: server.url, retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 }, ...options });
const classOf = (name: string): string | undefined => server.getObject(BUCKET, `${PREFIX}/${name}`)?.storageClass;

beforeEach(async () => {
  server = await FakeGcsServer.start({ pageSize: 3 });
});
afterEach(async () => {
  await server.close();
});

test('objects are created in the class given, by simple and resumable uploads, and stat and list report it', async () => {
  const storage = open({ storageClass: 'COLDLINE' });
  expect(await storage.put('a/small', { kind: 'buffer', data: Buffer.from('small') })).toBe('created');
  expect(await storage.put('a/big', { kind: 'buffer', data: Buffer.alloc(BIG, 7) })).toBe('created');
  expect(await storage.create('b/lease', Buffer.from('lease'))).toBe('created');
  expect([classOf('a/small'), classOf('a/big'), classOf('b/lease')]).toEqual(['COLDLINE', 'COLDLINE', 'COLDLINE']);
  expect((await storage.stat('a/small'))?.storageClass).toBe('COLDLINE');
  const listed = await storage.list('');
  expect(listed.objects.map((o) => [o.name, o.storageClass])).toEqual([
    ['a/big', 'COLDLINE'],
    ['a/small', 'COLDLINE'],
    ['b/lease', 'COLDLINE'],
  ]);
  // identical bytes again: a no-op whatever the class asked for now
  expect(await open({ storageClass: 'ARCHIVE' }).put('a/small', { kind: 'buffer', data: Buffer.from('small') })).toBe('identical');
  expect(classOf('a/small')).toBe('COLDLINE');
});

test('without a class the bucket default applies and no class is sent', async () => {
  const storage = open();
  await storage.put('plain', { kind: 'buffer', data: Buffer.from('plain') });
  expect(classOf('plain')).toBe('STANDARD');
  expect((await storage.stat('plain'))?.storageClass).toBe('STANDARD');
});

test('a class changed later (a lifecycle rule) changes neither the bytes nor the checksums read back', async () => {
  const storage = open({ storageClass: 'NEARLINE' });
  const data = Buffer.from('kept as it is');
  await storage.put('x', { kind: 'buffer', data });
  const before = await storage.stat('x');
  server.setStorageClass(BUCKET, `${PREFIX}/x`, 'ARCHIVE');
  const after = await storage.stat('x');
  expect(after).toEqual({ ...before, storageClass: 'ARCHIVE' });
  expect(await storage.read('x')).toEqual(data);
});

test('a class the bucket refuses is a clear repository error, not retried, and nothing is stored', async () => {
  server.refuseStorageClasses(BUCKET, ['ARCHIVE']);
  for (const data of [Buffer.from('small'), Buffer.alloc(BIG, 1)]) {
    server.resetLog();
    const error: unknown = await open({ storageClass: 'ARCHIVE' })
      .put('refused', { kind: 'buffer', data })
      .catch((e: unknown) => e);
    expect(isPitrError(error, 'Repository')).toBe(true);
    expect((error as Error).message).toMatch(
      /^upload of refused in gs:\/\/pitr-classes\/repo failed: the bucket refuses storage class ARCHIVE: The storage class ARCHIVE is not allowed/,
    );
    expect((error as { hint?: string }).hint).toMatch(/storage-class=/);
    expect(server.count(on.uploads)).toBe(1);
    expect(server.getObject(BUCKET, `${PREFIX}/refused`)).toBeUndefined();
  }
});
