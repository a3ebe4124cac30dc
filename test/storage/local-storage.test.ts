import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { PitrError } from '../../src/errors';

let dir: string;
let storage: LocalStorage;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'pitr-local-'));
  storage = new LocalStorage(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('create-only: identical bytes are a no-op, different bytes an integrity error that keeps the original', async () => {
  expect(await storage.put('a/b/x.bin', { kind: 'buffer', data: Buffer.from('one') })).toBe('created');
  expect(await storage.put('a/b/x.bin', { kind: 'buffer', data: Buffer.from('one') })).toBe('identical');
  const error = await storage.put('a/b/x.bin', { kind: 'buffer', data: Buffer.from('two') }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PitrError);
  expect((error as PitrError).kind).toBe('Integrity');
  expect((error as PitrError).message).toMatch(/object a\/b\/x.bin already exists .* with different content/);
  expect((await storage.read('a/b/x.bin')).toString()).toBe('one');
  expect(readdirSync(path.join(dir, '.tmp'))).toEqual([]);
});

test('put from an owned file consumes it', async () => {
  const file = path.join(dir, 'spool');
  writeFileSync(file, 'payload');
  await storage.put('seg/1.lz4', { kind: 'file', path: file, consume: true });
  expect(readdirSync(dir)).not.toContain('spool');
  expect((await storage.read('seg/1.lz4')).toString()).toBe('payload');
});

test('list with and without delimiter, ranged reads, stat and NotFound', async () => {
  for (const name of ['segments/00000000/a.json', 'segments/00000000/b.json', 'segments/00000001/c.json', 'repository.json'])
    await storage.put(name, { kind: 'buffer', data: Buffer.from(name) });
  expect((await storage.list('segments/')).objects.map((o) => o.name)).toEqual([
    'segments/00000000/a.json',
    'segments/00000000/b.json',
    'segments/00000001/c.json',
  ]);
  expect((await storage.list('segments/', { delimiter: '/' })).prefixes).toEqual(['segments/00000000/', 'segments/00000001/']);
  expect((await storage.list('segments/00000000/b')).objects.map((o) => o.name)).toEqual(['segments/00000000/b.json']);
  const chunks: Buffer[] = [];
  for await (const c of storage.readStream('repository.json', { start: 2, end: 5 })) chunks.push(c as Buffer);
  expect(Buffer.concat(chunks).toString()).toBe('posi');
  expect(await storage.stat('nope')).toBeNull();
  await expect(storage.read('nope')).rejects.toMatchObject({ kind: 'NotFound' });
  await storage.remove('repository.json');
  expect(await storage.stat('repository.json')).toBeNull();
});

test('create: a taken name is an answer, not an error; now() and modifiedAt are the storage clock', async () => {
  expect(await storage.create('lease/1.json', Buffer.from('mine'))).toBe('created');
  expect(await storage.create('lease/1.json', Buffer.from('mine'))).toBe('identical');
  expect(await storage.create('lease/1.json', Buffer.from('theirs'))).toBe('taken');
  expect((await storage.read('lease/1.json')).toString()).toBe('mine');
  const written = (await storage.stat('lease/1.json'))?.modifiedAt;
  const now = await storage.now();
  expect(typeof written?.getTime()).toBe('number'); // fs dates come from another realm than jest's Date
  expect(now.getTime()).toBeGreaterThanOrEqual((written as Date).getTime());
  expect(readdirSync(path.join(dir, '.tmp'))).toEqual([]);
});

test('an owned file is kept when its bytes could not be stored, for the retry', async () => {
  const file = path.join(dir, 'spool');
  writeFileSync(file, 'payload');
  await storage.put('seg/1.lz4', { kind: 'buffer', data: Buffer.from('other') });
  await expect(storage.put('seg/1.lz4', { kind: 'file', path: file, consume: true })).rejects.toMatchObject({ kind: 'Integrity' });
  expect(readdirSync(dir)).toContain('spool');
});

test('a directory removed after a put into it (an emptied folder, a repository moved away and back) is made again by the next put', async () => {
  await storage.put('segments/00000000/a.json', { kind: 'buffer', data: Buffer.from('a') });
  rmSync(path.join(dir, 'segments'), { recursive: true });
  rmSync(path.join(dir, '.tmp'), { recursive: true });
  expect(await storage.put('segments/00000000/b.json', { kind: 'buffer', data: Buffer.from('b') })).toBe('created');
  expect((await storage.read('segments/00000000/b.json')).toString()).toBe('b');
});
