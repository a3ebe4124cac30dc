import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PitrError } from '../../errors';
import type { ListOptions, ListResult, ObjectInfo, PutResult, PutSource, Storage, StorageEncryption } from '../storage';
import type { Keyring } from './keyring';
import { SEALED_MAGIC, SEALED_VERSION, plainSize } from './sealed-format';
import { ObjectOpener, ObjectSealer, PieceTransform, checkEnvelope, openBuffer, sealBuffer } from './sealed-streams';

export const ENCRYPTION_SCHEME = `${SEALED_MAGIC.toString('ascii')}/${SEALED_VERSION}`;

/**
 * Client-side encryption at rest over another storage: every object but those `storedPlain` names is
 * sealed (sealed-format.ts) on put and opened on read, so callers see plaintext and the rest of the code
 * does not change. The contract holds on plaintext:
 *
 *   - create-only: sealing is randomized, so the stored bytes of two puts of one plaintext never match
 *     and the inner storage refuses the second; the plaintexts are then compared (the stored object
 *     opened and hashed, the new one hashed): 'identical' when equal, else an Integrity error;
 *   - `stat` and `list` report the plaintext size (the layout fixes it from the stored size: callers
 *     compare sizes with what manifests record) and no MD5 (that of the ciphertext compares with nothing);
 *   - memory stays bounded: files are sealed as a stream into a temporary file beside them, reads open
 *     chunk by chunk and give a chunk's bytes only once it authenticates.
 *
 * Without a keyring (no key given) names, sizes and envelopes stay checkable (`encryption.checkEnvelope`);
 * reading or writing a sealed object throws a Key error.
 */
export class EncryptedStorage implements Storage {
  readonly location: string;
  readonly rereadIsCheap: boolean;
  readonly encryption: StorageEncryption;

  constructor(
    private readonly inner: Storage,
    private readonly keyring: Keyring | undefined,
    private readonly storedPlain: (name: string) => boolean,
  ) {
    this.location = inner.location;
    this.rereadIsCheap = inner.rereadIsCheap ?? false;
    this.encryption = {
      scheme: ENCRYPTION_SCHEME,
      currentKeyId: keyring?.current.id,
      isSealed: (name) => !storedPlain(name),
      checkEnvelope: async (name) => checkEnvelope(inner.readStream(name), name),
    };
  }

  async put(name: string, source: PutSource): Promise<PutResult> {
    if (this.storedPlain(name)) return this.inner.put(name, source);
    const keyring = this.requireKeyring(name);
    let sealedFile: string | undefined;
    try {
      if (source.kind === 'buffer') await this.inner.put(name, { kind: 'buffer', data: sealBuffer(name, keyring, source.data) });
      else {
        sealedFile = `${source.path}.sealed-${randomBytes(6).toString('hex')}`;
        await pipeline(createReadStream(source.path), new PieceTransform(new ObjectSealer(name, keyring)), createWriteStream(sealedFile));
        await this.inner.put(name, { kind: 'file', path: sealedFile, consume: true });
      }
    } catch (error) {
      // the name exists (sealing is randomized: its stored bytes always differ): the same plaintext is fine
      if (!(error instanceof PitrError && error.kind === 'Integrity' && (await this.inner.stat(name)))) throw error;
      return this.putExisting(name, source);
    } finally {
      if (sealedFile) await fs.rm(sealedFile, { force: true });
    }
    if (source.kind === 'file' && source.consume) await fs.rm(source.path, { force: true });
    return 'created';
  }

  async create(name: string, data: Buffer): Promise<PutResult | 'taken'> {
    if (this.storedPlain(name)) return this.inner.create(name, data);
    const keyring = this.requireKeyring(name);
    if ((await this.inner.create(name, sealBuffer(name, keyring, data))) === 'created') return 'created';
    return (await this.plainDigest(name)) === sha256(data) ? 'identical' : 'taken';
  }

  private async putExisting(name: string, source: PutSource): Promise<PutResult> {
    const given = source.kind === 'buffer' ? sha256(source.data) : await digestOf(createReadStream(source.path));
    if ((await this.plainDigest(name)) !== given)
      throw new PitrError(
        'Integrity',
        `object ${name} already exists in ${this.location} with different content`,
        'an archived object is never overwritten: another archiver may be writing to this repository, or the object is corrupt; see docs/runbooks/different-content.md and run "pitr verify"',
      );
    if (source.kind === 'file' && source.consume) await fs.rm(source.path, { force: true });
    return 'identical';
  }

  private plainDigest(name: string): Promise<string> {
    return digestOf(this.readStream(name));
  }

  async read(name: string): Promise<Buffer> {
    const bytes = await this.inner.read(name);
    if (this.storedPlain(name)) return bytes;
    return openBuffer(name, this.keyring, this.location, bytes);
  }

  /** A range is served by opening the object from its start (no caller reads ranges of sealed objects). */
  readStream(name: string, range?: { start: number; end?: number }): Readable {
    if (this.storedPlain(name)) return this.inner.readStream(name, range);
    const source = this.inner.readStream(name);
    const opened = new PieceTransform(new ObjectOpener(name, this.keyring, this.location));
    source.on('error', (error) => opened.destroy(error));
    opened.on('close', () => source.destroy());
    source.pipe(opened);
    if (!range) return opened;
    const out = new PassThrough();
    opened.on('error', (error) => out.destroy(error));
    out.on('close', () => opened.destroy());
    return opened.pipe(new ByteRange(range.start, range.end)).pipe(out);
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const info = await this.inner.stat(name);
    return info && this.plainInfo(info);
  }

  async list(prefix: string, options?: ListOptions): Promise<ListResult> {
    const { objects, prefixes } = await this.inner.list(prefix, options);
    return { objects: objects.map((o) => this.plainInfo(o)), prefixes };
  }

  private plainInfo(info: ObjectInfo): ObjectInfo {
    if (this.storedPlain(info.name)) return info;
    const { md5: _md5, ...rest } = info;
    // a size no sealed object has (damaged) is left as stored: it matches no manifest either
    return { ...rest, size: plainSize(info.size) ?? info.size };
  }

  remove(name: string): Promise<void> {
    return this.inner.remove(name);
  }

  checkWritable(): Promise<void> {
    return this.inner.checkWritable();
  }

  now(): Promise<Date> {
    return this.inner.now();
  }

  private requireKeyring(name: string): Keyring {
    if (this.keyring) return this.keyring;
    throw new PitrError(
      'Key',
      `repository ${this.location} is encrypted and no encryption key was given (to write ${name})`,
      'give the key file with --encryption-key-file or PITR_ENCRYPTION_KEY_FILE, or the key in PITR_ENCRYPTION_KEY (docs/runbooks/encryption-keys.md)',
    );
  }
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

async function digestOf(source: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of source) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Passes bytes `start` to `end` (inclusive) of a stream. */
class ByteRange extends Transform {
  private at = 0;

  constructor(
    private readonly first: number,
    private readonly last: number | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const from = Math.max(0, this.first - this.at);
    const to = this.last === undefined ? chunk.length : Math.min(chunk.length, this.last + 1 - this.at);
    if (to > from) this.push(chunk.subarray(from, to));
    this.at += chunk.length;
    callback();
  }
}
