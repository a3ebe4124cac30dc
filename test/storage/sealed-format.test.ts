import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { PitrError } from '../../src/errors';
import { EncryptedStorage } from '../../src/storage/encrypted/encrypted-storage';
import { derivedKeyId, parseKeyring, type Keyring } from '../../src/storage/encrypted/keyring';
import { CHUNK_BYTES, HEADER_BYTES, TAG_BYTES, TRAILER_BYTES, plainSize, sealedSize } from '../../src/storage/encrypted/sealed-format';
import { ObjectOpener, ObjectSealer, checkEnvelope, openBuffer, sealBuffer } from '../../src/storage/encrypted/sealed-streams';
import { LocalStorage } from '../../src/storage/local/local-storage';

const hexA = 'a'.repeat(64);
const hexB = randomBytes(32).toString('hex');
const ringA = parseKeyring(`ka:${hexA}`, 'test');
const ringB = parseKeyring(`kb:${hexB}\nka:${hexA}`, 'test');

const caught = (fn: () => unknown): PitrError => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PitrError);
    return error as PitrError;
  }
  throw new Error('expected an error');
};

describe('sealed format', () => {
  test('round trip at chunk boundaries and for an empty object; stored sizes follow from plaintext sizes and back', () => {
    for (const size of [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES, 3 * CHUNK_BYTES + 17]) {
      const plain = randomBytes(size);
      const sealed = sealBuffer('segments/x.lz4', ringA, plain);
      expect(sealed.length).toBe(sealedSize(size));
      expect(plainSize(sealed.length)).toBe(size);
      expect(openBuffer('segments/x.lz4', ringA, 'repo', sealed).equals(plain)).toBe(true);
    }
    expect(sealedSize(0)).toBe(HEADER_BYTES + TAG_BYTES + TRAILER_BYTES);
    // one byte short of a chunk's tag after a full chunk: no sealed object has that size
    expect(plainSize(sealedSize(CHUNK_BYTES) + TAG_BYTES)).toBeUndefined();
  });

  test('sealing is randomized and the plaintext does not show in the sealed bytes', () => {
    const plain = Buffer.from('distinctive-plaintext-value '.repeat(100));
    const one = sealBuffer('a', ringA, plain);
    const two = sealBuffer('a', ringA, plain);
    expect(one.equals(two)).toBe(false);
    expect(one.includes(Buffer.from('distinctive-plaintext-value'))).toBe(false);
    expect(one.subarray(0, 8).toString()).toBe('PITRAES1');
  });

  test('truncation at a chunk boundary, inside a chunk, and of the trailer is an integrity error', () => {
    const sealed = sealBuffer('n', ringA, randomBytes(3 * CHUNK_BYTES));
    const atBoundary = Buffer.concat([sealed.subarray(0, HEADER_BYTES + 2 * (CHUNK_BYTES + TAG_BYTES)), sealed.subarray(sealed.length - TRAILER_BYTES)]);
    for (const cut of [atBoundary, sealed.subarray(0, sealed.length - 1000), sealed.subarray(0, sealed.length - 5), sealed.subarray(0, 40)]) {
      const error = caught(() => openBuffer('n', ringA, 'repo', cut));
      expect(error.kind).toBe('Integrity');
      expect(error.message).toMatch(/^object n is corrupt: /);
    }
    expect(caught(() => openBuffer('n', ringA, 'repo', atBoundary)).message).toBe(
      'object n is corrupt: chunk 1 fails authentication (changed, truncated, reordered or stored under another name)',
    );
  });

  test('chunks reordered, an object under another name, a flipped byte: integrity errors naming the object', () => {
    const sealed = sealBuffer('segments/a.lz4', ringA, randomBytes(2 * CHUNK_BYTES + 10));
    const c = CHUNK_BYTES + TAG_BYTES;
    const swapped = Buffer.concat([
      sealed.subarray(0, HEADER_BYTES),
      sealed.subarray(HEADER_BYTES + c, HEADER_BYTES + 2 * c),
      sealed.subarray(HEADER_BYTES, HEADER_BYTES + c),
      sealed.subarray(HEADER_BYTES + 2 * c),
    ]);
    expect(caught(() => openBuffer('segments/a.lz4', ringA, 'repo', swapped)).message).toMatch(/chunk 0 fails authentication/);
    const moved = caught(() => openBuffer('segments/b.lz4', ringA, 'repo', sealed));
    expect([moved.kind, moved.message]).toEqual(['Integrity', expect.stringMatching(/^object segments\/b\.lz4 is corrupt: chunk 0 fails authentication/)]);
    for (const at of [HEADER_BYTES + 5, HEADER_BYTES + c + 100, sealed.length - 3, 20, 60]) {
      const flipped = Buffer.from(sealed);
      flipped[at] = (flipped[at] as number) ^ 0x01;
      const error = caught(() => openBuffer('segments/a.lz4', ringA, 'repo', flipped));
      expect(error.kind).toBe('Integrity');
      expect(error.message).toMatch(/^object segments\/a\.lz4 is corrupt: /);
    }
  });

  test('a wrong key, a key id not given, no key at all: key errors naming the key id', () => {
    const sealed = sealBuffer('o', ringA, Buffer.from('x'));
    const wrong = caught(() => openBuffer('o', parseKeyring(`ka:${hexB}`, 'test'), 'repo', sealed));
    expect([wrong.kind, wrong.exitCode, wrong.message]).toEqual(['Key', 10, 'the encryption key given as "ka" is not the key object o is sealed with']);
    const missing = caught(() => openBuffer('o', parseKeyring(`kb:${hexB}`, 'test'), 'repo', sealed));
    expect([missing.kind, missing.message]).toEqual(['Key', 'object o is sealed with encryption key "ka", which is not among the keys given (kb)']);
    const none = caught(() => openBuffer('o', undefined, 'repo', sealed));
    expect([none.kind, none.message]).toEqual(['Key', 'repository repo is encrypted and no encryption key was given (object o is sealed with key "ka")']);
  });

  test('key rotation: the first key seals, every key opens what it sealed', () => {
    const old = sealBuffer('o', ringA, Buffer.from('old'));
    const current = sealBuffer('p', ringB, Buffer.from('new'));
    expect(openBuffer('o', ringB, 'repo', old).toString()).toBe('old');
    expect(openBuffer('p', ringB, 'repo', current).toString()).toBe('new');
    expect(caught(() => openBuffer('p', ringA, 'repo', current)).message).toMatch(/sealed with encryption key "kb"/);
  });

  test('keys: hex or base64, ids given or derived, bad material refused without showing it', () => {
    const base64 = Buffer.from(hexA, 'hex').toString('base64');
    const ring = parseKeyring(`# keys\n\nk1:${base64}\n${hexB}\n`, 'key file f');
    expect(ring.current.id).toBe('k1');
    expect([...ring.keys.keys()]).toEqual(['k1', derivedKeyId(Buffer.from(hexB, 'hex'))]);
    const bad = caught(() => parseKeyring('k1:abcdef', 'key file f'));
    expect([bad.kind, bad.message]).toEqual(['Key', 'key file f, entry 1: the key is not 32 bytes written as 64 hex digits or base64']);
    expect(caught(() => parseKeyring(`k1:${hexA}\nk1:${hexB}`, 'f')).message).toMatch(/key id "k1" is given twice/);
    expect(caught(() => parseKeyring('\n# none\n', 'f')).message).toBe('f holds no key');
  });

  test('streaming a large object holds about one chunk at a time, whatever its size', () => {
    const sealer = new ObjectSealer('big', ringA);
    const opener = new ObjectOpener('big', ringA, 'repo');
    const plainHash = createHash('sha256');
    const openedHash = createHash('sha256');
    let biggestSealed = 0;
    const piece = randomBytes(10_000);
    const feed = (out: Buffer[]): void => {
      for (const sealed of out) {
        biggestSealed = Math.max(biggestSealed, sealed.length);
        // hand the opener the sealed bytes in odd-sized pieces
        for (let at = 0; at < sealed.length; at += 7_777) for (const plain of opener.write(sealed.subarray(at, at + 7_777))) openedHash.update(plain);
      }
    };
    for (let i = 0; i < 6_400; i++) {
      // 64 MB in all
      plainHash.update(piece);
      feed(sealer.write(piece));
    }
    feed(sealer.end());
    for (const plain of opener.end()) openedHash.update(plain);
    expect(openedHash.digest('hex')).toBe(plainHash.digest('hex'));
    expect(biggestSealed).toBe(CHUNK_BYTES + TAG_BYTES);
    expect(sealer.maxQueuedBytes).toBeLessThanOrEqual(CHUNK_BYTES + piece.length);
    expect(opener.maxQueuedBytes).toBeLessThanOrEqual(CHUNK_BYTES + TAG_BYTES + TRAILER_BYTES + 7_777);
  });

  test('the envelope checks without the key: intact, flipped byte, cut short', async () => {
    const sealed = sealBuffer('o', ringA, randomBytes(CHUNK_BYTES + 5));
    expect(await checkEnvelope(Readable.from([sealed]), 'o')).toEqual({ bytes: sealed.length });
    const flipped = Buffer.from(sealed);
    flipped[HEADER_BYTES + 3] = (flipped[HEADER_BYTES + 3] as number) ^ 0x80;
    expect((await checkEnvelope(Readable.from([flipped.subarray(0, 1000), flipped.subarray(1000)]), 'o')).problem).toBe(
      'the SHA-256 in its trailer does not match its bytes',
    );
    expect((await checkEnvelope(Readable.from([sealed.subarray(0, sealed.length - 6)]), 'o')).problem).toMatch(/is not the size of an encrypted object/);
    expect((await checkEnvelope(Readable.from([Buffer.from('{"plain": true}')]), 'o')).problem).toBe('not an encrypted object (no PITRAES1 header)');
  });
});

describe('EncryptedStorage over a local directory', () => {
  let dir: string;
  let inner: LocalStorage;
  const open = (keyring: Keyring | undefined): EncryptedStorage => new EncryptedStorage(inner, keyring, (name) => name === 'repository.json');

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pitr-sealed-'));
    inner = new LocalStorage(path.join(dir, 'repo'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('create-only on plaintext: an identical re-put is identical, other content an integrity error; sizes are plaintext sizes', async () => {
    const storage = open(ringA);
    const spool = path.join(dir, 'spool');
    const plain = randomBytes(3 * CHUNK_BYTES + 123);
    writeFileSync(spool, plain);
    expect(await storage.put('segments/s.lz4', { kind: 'file', path: spool, consume: true })).toBe('created');
    expect(readdirSync(dir).sort()).toEqual(['repo']); // spool consumed, no sealed temporary left
    expect((await storage.stat('segments/s.lz4'))?.size).toBe(plain.length);
    expect((await inner.stat('segments/s.lz4'))?.size).toBe(sealedSize(plain.length));
    expect((await storage.list('segments/')).objects.map((o) => [o.name, o.size])).toEqual([['segments/s.lz4', plain.length]]);
    writeFileSync(spool, plain);
    expect(await storage.put('segments/s.lz4', { kind: 'file', path: spool, consume: true })).toBe('identical');
    const other = await storage.put('segments/s.lz4', { kind: 'buffer', data: Buffer.from('other') }).catch((e: unknown) => e as PitrError);
    expect([(other as PitrError).kind, (other as PitrError).message]).toEqual([
      'Integrity',
      `object segments/s.lz4 already exists in ${inner.location} with different content`,
    ]);
    const streamed: Buffer[] = [];
    for await (const chunk of storage.readStream('segments/s.lz4')) streamed.push(chunk as Buffer);
    expect(Buffer.concat(streamed).equals(plain)).toBe(true);
    const ranged: Buffer[] = [];
    for await (const chunk of storage.readStream('segments/s.lz4', { start: CHUNK_BYTES - 2, end: CHUNK_BYTES + 2 })) ranged.push(chunk as Buffer);
    expect(Buffer.concat(ranged).equals(plain.subarray(CHUNK_BYTES - 2, CHUNK_BYTES + 3))).toBe(true);
  });

  test('plaintext names stay plaintext; create answers identical and taken on plaintext; no key: key errors', async () => {
    const storage = open(ringA);
    await storage.put('repository.json', { kind: 'buffer', data: Buffer.from('{"id": 1}') });
    expect(readFileSync(path.join(dir, 'repo', 'repository.json'), 'utf8')).toBe('{"id": 1}');
    expect(await storage.create('index/catalog/1.json', Buffer.from('one'))).toBe('created');
    expect(await storage.create('index/catalog/1.json', Buffer.from('one'))).toBe('identical');
    expect(await storage.create('index/catalog/1.json', Buffer.from('two'))).toBe('taken');
    const keyless = open(undefined);
    expect((await keyless.read('repository.json')).toString()).toBe('{"id": 1}');
    const error = await keyless.read('index/catalog/1.json').catch((e: unknown) => e as PitrError);
    expect([(error as PitrError).kind, (error as PitrError).message]).toEqual([
      'Key',
      `repository ${inner.location} is encrypted and no encryption key was given (object index/catalog/1.json is sealed with key "ka")`,
    ]);
    expect(await keyless.encryption.checkEnvelope('index/catalog/1.json')).toEqual({ bytes: sealedSize(3) });
    const put = await keyless.put('x', { kind: 'buffer', data: Buffer.from('x') }).catch((e: unknown) => e as PitrError);
    expect((put as PitrError).kind).toBe('Key');
  });

  test('a flipped byte fails the stream before any byte of the damaged chunk is given out', async () => {
    const storage = open(ringA);
    const plain = randomBytes(2 * CHUNK_BYTES + 1);
    await storage.put('segments/s.lz4', { kind: 'buffer', data: plain });
    const file = path.join(dir, 'repo', 'segments', 's.lz4');
    const sealed = readFileSync(file);
    sealed[HEADER_BYTES + CHUNK_BYTES + TAG_BYTES + 9] = (sealed[HEADER_BYTES + CHUNK_BYTES + TAG_BYTES + 9] as number) ^ 0x01;
    rmSync(file);
    writeFileSync(file, sealed);
    let given = 0;
    const error = await (async () => {
      for await (const chunk of storage.readStream('segments/s.lz4')) given += (chunk as Buffer).length;
    })().catch((e: unknown) => e as PitrError);
    expect([(error as PitrError).kind, (error as PitrError).message]).toEqual([
      'Integrity',
      'object segments/s.lz4 is corrupt: chunk 1 fails authentication (changed, truncated, reordered or stored under another name)',
    ]);
    expect(given).toBe(CHUNK_BYTES);
    expect((await storage.encryption.checkEnvelope('segments/s.lz4')).problem).toBe('the SHA-256 in its trailer does not match its bytes');
  });
});
