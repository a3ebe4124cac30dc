import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { decodeCheckedJson } from '../archive/checked-json';
import { isPitrError, messageOf } from '../errors';
import type { ObjectInfo, PutSource, Storage } from '../storage/storage';

/**
 * How an object read from one repository is checked before it is stored in another: against the
 * SHA-256 and size its manifest records (segment data, backup parts), or as checked JSON (manifests,
 * records), optionally with what its content must say (`validate` returns why it is wrong).
 */
export type ObjectCheck =
  { kind: 'digest'; sha256: string; bytes: number } | { kind: 'checked-json'; validate?: (doc: Record<string, unknown>) => string | undefined };

/**
 * copied: stored in the target. present: the target already holds it. differs: the target holds other
 * bytes under the name (left as they are). refused: the source's copy fails its check (nothing stored).
 * gone: the source no longer holds it (removed since it was listed).
 */
export type CopyOutcome =
  | { status: 'copied'; bytes: number }
  | { status: 'present'; bytes: number }
  | { status: 'differs'; detail: string }
  | { status: 'refused'; detail: string }
  | { status: 'gone' };

/** Reads `name` from `from`, checks it, and returns a local spool file holding exactly the checked bytes. */
export type CheckedRead = { ok: true; file: string; bytes: number } | { ok: false; outcome: CopyOutcome };

/**
 * Streams an object into a spool file under `spoolDir` while hashing it (bounded memory whatever its
 * size), then checks it; a file that fails is removed. `onBytes` sees the bytes as they are read.
 */
export async function readChecked(from: Storage, name: string, check: ObjectCheck, spoolDir: string, onBytes?: (n: number) => void): Promise<CheckedRead> {
  const file = path.join(spoolDir, `${randomBytes(8).toString('hex')}-${path.basename(name)}`);
  const hash = createHash('sha256');
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(from.readStream(name), counter, createWriteStream(file));
  } catch (error) {
    await fs.rm(file, { force: true });
    if (isPitrError(error, 'NotFound')) return { ok: false, outcome: { status: 'gone' } };
    // a store that checks digests on download (GCS) refuses a damaged object outright
    if (isPitrError(error, 'Integrity')) return { ok: false, outcome: { status: 'refused', detail: messageOf(error) } };
    throw error;
  }
  // checked JSON documents are small (manifests, records): read whole to check
  const content = check.kind === 'checked-json' ? await fs.readFile(file) : Buffer.alloc(0);
  const wrong = whyWrong(check, hash.digest('hex'), bytes, name, () => content);
  if (wrong) {
    await fs.rm(file, { force: true });
    return { ok: false, outcome: { status: 'refused', detail: wrong } };
  }
  return { ok: true, file, bytes };
}

/**
 * Objects up to this size are copied through memory (one read, one write) rather than a spool file:
 * manifests, records and most segments, whose copy is then a few system calls.
 */
const IN_MEMORY_BYTES = 4 * 1024 * 1024;

/** Reads a small object whole and checks it; the bytes, or why they are not copied. */
async function readCheckedBytes(
  from: Storage,
  name: string,
  check: ObjectCheck,
  onBytes?: (n: number) => void,
): Promise<{ ok: true; data: Buffer } | { ok: false; outcome: CopyOutcome }> {
  let data: Buffer;
  try {
    data = await from.read(name);
  } catch (error) {
    if (isPitrError(error, 'NotFound')) return { ok: false, outcome: { status: 'gone' } };
    if (isPitrError(error, 'Integrity')) return { ok: false, outcome: { status: 'refused', detail: messageOf(error) } };
    throw error;
  }
  onBytes?.(data.length);
  const wrong = whyWrong(check, createHash('sha256').update(data).digest('hex'), data.length, name, () => data);
  return wrong ? { ok: false, outcome: { status: 'refused', detail: wrong } } : { ok: true, data };
}

function whyWrong(check: ObjectCheck, sha256: string, bytes: number, name: string, content: () => Buffer): string | undefined {
  if (check.kind === 'digest') {
    if (sha256 !== check.sha256) return `sha256 ${sha256} does not match its manifest (${check.sha256})`;
    if (bytes !== check.bytes) return `${bytes} bytes, its manifest says ${check.bytes}`;
    return undefined;
  }
  let doc: Record<string, unknown>;
  try {
    doc = decodeCheckedJson<Record<string, unknown>>(content(), name);
  } catch (error) {
    return messageOf(error).replace(`object ${name} is corrupt: `, '');
  }
  return check.validate?.(doc);
}

export interface CopyArgs {
  from: Storage;
  to: Storage;
  name: string;
  check: ObjectCheck;
  /** A local directory for the bytes between reading and storing. */
  spoolDir: string;
  source?: ObjectInfo;
  present?: ObjectInfo;
  equivalent?: (source: Buffer, target: Buffer) => boolean;
  onBytes?: (n: number) => void;
}

/**
 * Copies one object, create-only: nothing already in the target is replaced. `present` is what a listing
 * of the target said of the name (undefined: absent); `source` what the source's listing said. An object
 * already there counts as copied when its size (and MD5, where both storages give one) match; a checked
 * JSON document without MD5s to compare is read from both sides and compared byte for byte, or with
 * `equivalent` (two manifests of the same segment written separately may differ in their times).
 */
export async function copyObject(args: CopyArgs): Promise<CopyOutcome> {
  const { from, to, name, check, present } = args;
  if (present) return compareExisting(args, present);
  if (args.source && args.source.size <= IN_MEMORY_BYTES) {
    const read = await readCheckedBytes(from, name, check, args.onBytes);
    return read.ok ? store(to, name, { kind: 'buffer', data: read.data }, read.data.length) : read.outcome;
  }
  const read = await readChecked(from, name, check, args.spoolDir, args.onBytes);
  if (!read.ok) return read.outcome;
  try {
    return await store(to, name, { kind: 'file', path: read.file, consume: true }, read.bytes);
  } finally {
    await fs.rm(read.file, { force: true });
  }
}

async function store(to: Storage, name: string, source: PutSource, bytes: number): Promise<CopyOutcome> {
  try {
    const result = await to.put(name, source);
    return result === 'created' ? { status: 'copied', bytes } : { status: 'present', bytes };
  } catch (error) {
    // stored meanwhile by someone else (an archiver writing the target too) with other bytes
    if (isPitrError(error, 'Integrity')) return { status: 'differs', detail: messageOf(error) };
    throw error;
  }
}

async function compareExisting(args: CopyArgs, present: ObjectInfo): Promise<CopyOutcome> {
  const { source } = args;
  const different = `the target holds ${present.size} bytes under this name`;
  if (args.check.kind === 'digest') {
    if (present.size !== args.check.bytes) return { status: 'differs', detail: `${different}, its manifest says ${args.check.bytes}` };
    if (source?.md5 && present.md5 && source.md5 !== present.md5) return { status: 'differs', detail: `${different} with another MD5 than the source's` };
    return { status: 'present', bytes: present.size };
  }
  if (source?.md5 && present.md5 && source.size === present.size && source.md5 === present.md5) return { status: 'present', bytes: present.size };
  let sourceBytes: Buffer;
  try {
    sourceBytes = await args.from.read(args.name);
  } catch (error) {
    if (isPitrError(error, 'NotFound')) return { status: 'gone' };
    throw error;
  }
  const targetBytes = await args.to.read(args.name).catch((error: unknown) => {
    if (isPitrError(error, 'NotFound')) return undefined;
    throw error;
  });
  if (targetBytes === undefined || sourceBytes.equals(targetBytes)) {
    if (targetBytes !== undefined) return { status: 'present', bytes: targetBytes.length };
    // removed from the target since it was listed: copy it after all
    const { present: _gone, ...rest } = args;
    return copyObject(rest);
  }
  if (args.equivalent?.(sourceBytes, targetBytes)) return { status: 'present', bytes: targetBytes.length };
  return { status: 'differs', detail: `the target holds other content under this name (${targetBytes.length} bytes, the source's ${sourceBytes.length})` };
}
