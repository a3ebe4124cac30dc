import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { localPathOf, objectNameOfPath } from '../../src/storage/local/local-layout';
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

describe('fan-out folders for segments', () => {
  const seg = (first: string, end: string, ext: string): string => `segments/${first.slice(0, 8)}/${first}-${end}.${ext}`;
  const a = seg('0000000001A2B3C8', '0000000001A2B4F0', 'json');
  const b = seg('0000000001A2C000', '0000000001A2C0F0', 'json');
  const c = seg('0000000001A30010', '0000000001A300F0', 'json');
  const d = seg('0000000100000028', '00000001000000F0', 'lz4');

  test("a segment's files sit in a folder named after the first 12 digits of FIRST; object names do not change", async () => {
    for (const name of [a, b, c, d]) await storage.put(name, { kind: 'buffer', data: Buffer.from(name) });
    expect(readdirSync(path.join(dir, 'segments/00000000')).sort()).toEqual(['0000000001A2', '0000000001A3']);
    expect(readdirSync(path.join(dir, 'segments/00000000/0000000001A2')).sort()).toEqual([path.basename(a), path.basename(b)]);
    expect(objectNameOfPath(`segments/00000000/0000000001A2/${path.basename(a)}`)).toBe(a);
    expect(path.join(dir, ...localPathOf(d))).toBe(path.join(dir, 'segments/00000001/000000010000', path.basename(d)));
    expect((await storage.list('segments/')).objects.map((o) => o.name)).toEqual([a, b, c, d]);
    expect((await storage.list('segments/00000000/')).objects.map((o) => o.name)).toEqual([a, b, c]);
    expect((await storage.list('segments/', { delimiter: '/' })).prefixes).toEqual(['segments/00000000/', 'segments/00000001/']);
    expect((await storage.list('segments/00000000/', { delimiter: '/' })).objects.map((o) => o.name)).toEqual([a, b, c]);
    expect((await storage.list('segments/00000000/0000000001A2C')).objects.map((o) => o.name)).toEqual([b]);
    expect((await storage.list('segments/', { startAfter: a })).objects.map((o) => o.name)).toEqual([b, c, d]);
    expect((await storage.list('segments/', { startAfter: b })).objects.map((o) => o.name)).toEqual([c, d]);
    expect((await storage.stat(c))?.size).toBe(Buffer.byteLength(c));
    const chunks: Buffer[] = [];
    for await (const chunk of storage.readStream(c, { start: 0, end: 7 })) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('segments');
    await storage.remove(c);
    expect(readdirSync(path.join(dir, 'segments/00000000'))).toEqual(['0000000001A2']);
    await expect(storage.read(c)).rejects.toMatchObject({ kind: 'NotFound' });
    const missing: unknown = await new Promise((resolve) => storage.readStream(c).on('error', resolve).resume());
    expect(missing).toMatchObject({ kind: 'NotFound' });
  });

  test('a repository written before fan-out folders (files flat in the HI folder) is read, listed, kept create-only and pruned alongside new files', async () => {
    mkdirSync(path.join(dir, 'segments/00000000'), { recursive: true });
    writeFileSync(path.join(dir, ...a.split('/')), 'old a');
    writeFileSync(path.join(dir, ...b.split('/')), 'old b');
    await storage.put(c, { kind: 'buffer', data: Buffer.from('new c') });
    expect((await storage.list('segments/')).objects.map((o) => o.name)).toEqual([a, b, c]);
    expect((await storage.list('segments/', { startAfter: a })).objects.map((o) => o.name)).toEqual([b, c]);
    expect((await storage.read(a)).toString()).toBe('old a');
    expect((await storage.stat(b))?.size).toBe(5);
    expect(await storage.put(a, { kind: 'buffer', data: Buffer.from('old a') })).toBe('identical');
    await expect(storage.put(b, { kind: 'buffer', data: Buffer.from('other') })).rejects.toMatchObject({ kind: 'Integrity' });
    expect(await storage.create(b, Buffer.from('other'))).toBe('taken');
    expect(readdirSync(path.join(dir, 'segments/00000000')).sort()).toEqual([path.basename(a), path.basename(b), '0000000001A3']);
    await storage.remove(a);
    await storage.remove(c);
    expect((await storage.list('segments/')).objects.map((o) => o.name)).toEqual([b]);
    expect(readdirSync(path.join(dir, 'segments/00000000'))).toEqual([path.basename(b)]);
  });
});
