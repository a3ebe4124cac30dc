import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { PitrError, isPitrError, messageOf } from '../errors';
import type { ListOptions, ListResult, ObjectInfo, PutResult, PutSource, Storage } from './storage';

/**
 * How a reader tells an intact copy of an object from a damaged one, before it uses the bytes:
 * 'digest' (size and SHA-256, from a manifest), 'whole' (the bytes check themselves, e.g. checked JSON),
 * or 'none' (nothing known: any copy that exists will do).
 */
export type ObjectCheck = { kind: 'none' } | { kind: 'whole'; intact: (bytes: Buffer) => boolean } | { kind: 'digest'; sha256: string; size: number };

/** One storage of a fallback set, with how many objects were read from it. */
export interface FallbackMember {
  name: string;
  storage: Storage;
  objectsRead: number;
  /** Why the set stopped using it (an error other than a missing or damaged object), once it has. */
  leftOut?: string;
}

/**
 * Reads from several storages holding copies of one repository, in the order given: each object comes
 * from the first storage holding an intact copy of it, falling back object by object. Listings are the
 * union of the members' listings. Read-only when there is more than one member.
 *
 * An object whose check is 'digest' is verified whole before the stream is handed out (hashed in place
 * where re-reading is cheap, else spooled to a temporary file while hashed), so no byte of a damaged copy
 * reaches the reader when another copy is intact. When no copy is intact the first copy that exists is
 * handed out unverified: the reader's own check fails on it exactly as it does with one storage.
 *
 * A member that fails with anything but a missing or damaged object (permission denied, an endpoint still
 * unreachable after the driver's retries, a missing bucket) is left out for the rest of the command, with
 * one warning naming it: what it cannot serve once it will not serve for the next object either, and
 * asking it again for every object would multiply the driver's retries. When none is left the error is
 * thrown.
 *
 * With a single member every call goes straight to it (only counted): one repository costs nothing more.
 */
export class FallbackStorage implements Storage {
  readonly location: string;
  readonly members: readonly FallbackMember[];
  private spoolDir: Promise<string> | undefined;
  private lastLeftOut: unknown;

  constructor(
    members: readonly { name: string; storage: Storage }[],
    private readonly checkOf: (name: string) => Promise<ObjectCheck>,
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    if (members.length === 0) throw new PitrError('Internal', 'a fallback storage needs at least one storage');
    this.members = members.map((m) => ({ name: m.name, storage: m.storage, objectsRead: 0 }));
    this.location = members.length === 1 ? (members[0] as { storage: Storage }).storage.location : this.members.map(describe).join(', ');
  }

  private get single(): FallbackMember | undefined {
    return this.members.length === 1 ? this.members[0] : undefined;
  }

  /** The members still in use, in the order given. */
  private active(): FallbackMember[] {
    return this.members.filter((m) => m.leftOut === undefined);
  }

  /** The members to try for the next object; when every one was left out, the error that left out the last. */
  private usable(): FallbackMember[] {
    const active = this.active();
    if (active.length === 0) throw this.lastLeftOut;
    return active;
  }

  /**
   * After `member` failed: a missing object is no news, a damaged one is told and the next member tried;
   * any other failure leaves the member out from now on (told once, however many reads were under way).
   */
  private failed(member: FallbackMember, error: unknown, what: string): void {
    if (isPitrError(error, 'NotFound')) return;
    if (isPitrError(error, 'Integrity')) {
      this.warn(`${describe(member)}: ${what}: ${messageOf(error)}; trying the next repository`);
      return;
    }
    if (member.leftOut !== undefined) return;
    member.leftOut = messageOf(error);
    this.lastLeftOut = error;
    const others = this.active();
    this.warn(
      `${describe(member)}: ${what}: ${messageOf(error)}; ${others.length > 0 ? `not using this repository for the rest of this command (reading from ${others.map((m) => m.name).join(', ')})` : 'no repository left to read from'}`,
    );
  }

  async read(name: string): Promise<Buffer> {
    const single = this.single;
    if (single) {
      const bytes = await single.storage.read(name);
      single.objectsRead++;
      return bytes;
    }
    const check = await this.checkOf(name);
    let firstCopy: { member: FallbackMember; bytes: Buffer } | undefined;
    let firstError: unknown;
    for (const member of this.usable()) {
      let bytes: Buffer;
      try {
        bytes = await member.storage.read(name);
      } catch (error) {
        firstError ??= error;
        this.failed(member, error, `cannot read ${name}`);
        continue;
      }
      const problem = problemOf(check, bytes);
      if (problem === undefined) return this.counted(member, bytes);
      this.warn(`${describe(member)}: ${name} ${problem}; trying the next repository`);
      firstCopy ??= { member, bytes };
    }
    if (firstCopy) return this.counted(firstCopy.member, firstCopy.bytes);
    throw firstError;
  }

  readStream(name: string, range?: { start: number; end?: number }): Readable {
    const single = this.single;
    if (single) {
      single.objectsRead++;
      return single.storage.readStream(name, range);
    }
    const out = new PassThrough();
    this.openStream(name, range).then(
      (source) => {
        if (out.destroyed) {
          // the reader gave up before a copy was found: release it (and its spool file)
          source.destroy();
          return;
        }
        source.on('error', (error) => out.destroy(error));
        out.on('close', () => source.destroy());
        source.pipe(out);
      },
      (error: unknown) => out.destroy(error as Error),
    );
    return out;
  }

  /** The stream of the first intact copy (a range is served from the first copy of the right size). */
  private async openStream(name: string, range?: { start: number; end?: number }): Promise<Readable> {
    const check = await this.checkOf(name);
    let firstCopy: FallbackMember | undefined;
    let firstError: unknown;
    for (const member of this.usable()) {
      let info: ObjectInfo | null;
      try {
        info = await member.storage.stat(name);
      } catch (error) {
        firstError ??= error;
        this.failed(member, error, `cannot read ${name}`);
        continue;
      }
      if (!info) continue;
      firstCopy ??= member;
      if (check.kind !== 'digest') return this.countedStream(member, name, range);
      if (info.size !== check.size) {
        this.warn(`${describe(member)}: ${name} is damaged: ${info.size} bytes, its manifest says ${check.size}; trying the next repository`);
        continue;
      }
      if (range) return this.countedStream(member, name, range);
      try {
        const verified = await this.verifiedStream(member, name, check.sha256);
        if (verified) {
          member.objectsRead++;
          return verified;
        }
        this.warn(`${describe(member)}: ${name} is damaged: its sha256 does not match its manifest; trying the next repository`);
      } catch (error) {
        firstError ??= error;
        this.failed(member, error, `cannot read ${name}`);
      }
    }
    if (firstCopy) return this.countedStream(firstCopy, name, range);
    throw firstError ?? new PitrError('NotFound', `object ${name} not found in ${this.location}`);
  }

  /**
   * The member's copy, once its SHA-256 is known to match, or null. Where re-reading is cheap the copy is
   * hashed, then read again; elsewhere it is spooled to a temporary file as it is hashed, and the stream
   * is of that file (removed once the stream closes): one download, bounded memory.
   */
  private async verifiedStream(member: FallbackMember, name: string, sha256: string): Promise<Readable | null> {
    const hash = createHash('sha256');
    if (member.storage.rereadIsCheap) {
      for await (const chunk of member.storage.readStream(name)) hash.update(chunk as Buffer);
      return hash.digest('hex') === sha256 ? member.storage.readStream(name) : null;
    }
    const file = path.join(await this.spool(), randomBytes(8).toString('hex'));
    try {
      await pipeline(
        member.storage.readStream(name),
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            hash.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(file),
      );
      if (hash.digest('hex') !== sha256) {
        await fs.rm(file, { force: true });
        return null;
      }
    } catch (error) {
      await fs.rm(file, { force: true });
      throw error;
    }
    const stream = createReadStream(file);
    stream.on('close', () => void fs.rm(file, { force: true }));
    return stream;
  }

  private spool(): Promise<string> {
    this.spoolDir ??= fs.mkdtemp(path.join(tmpdir(), 'pitr-read-'));
    return this.spoolDir;
  }

  /** Removes the spool directory (streams still open keep their files until they close). */
  async close(): Promise<void> {
    if (this.spoolDir) await fs.rm(await this.spoolDir, { recursive: true, force: true });
  }

  private counted(member: FallbackMember, bytes: Buffer): Buffer {
    member.objectsRead++;
    return bytes;
  }

  private countedStream(member: FallbackMember, name: string, range?: { start: number; end?: number }): Readable {
    member.objectsRead++;
    return member.storage.readStream(name, range);
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const single = this.single;
    if (single) return single.storage.stat(name);
    let firstError: unknown;
    let answered = false;
    for (const member of this.usable()) {
      try {
        const info = await member.storage.stat(name);
        answered = true;
        if (info) return info;
      } catch (error) {
        firstError ??= error;
        this.failed(member, error, `cannot stat ${name}`);
      }
    }
    if (!answered) throw firstError;
    return null;
  }

  /** The union of the members' listings (a member that cannot be listed is left out, with a warning). */
  async list(prefix: string, options?: ListOptions): Promise<ListResult> {
    const single = this.single;
    if (single) return single.storage.list(prefix, options);
    const objects = new Map<string, ObjectInfo>();
    const prefixes = new Set<string>();
    let firstError: unknown;
    let answered = false;
    for (const member of this.usable()) {
      let listed: ListResult;
      try {
        listed = await member.storage.list(prefix, options);
      } catch (error) {
        firstError ??= error;
        this.failed(member, error, `cannot list ${prefix || '/'}`);
        continue;
      }
      answered = true;
      for (const o of listed.objects) if (!objects.has(o.name)) objects.set(o.name, o);
      for (const p of listed.prefixes) prefixes.add(p);
    }
    if (!answered) throw firstError;
    return {
      objects: [...objects.values()].sort((a, b) => compare(a.name, b.name)),
      prefixes: [...prefixes].sort(compare),
    };
  }

  put(name: string, source: PutSource): Promise<PutResult> {
    return this.writer(`store ${name}`).put(name, source);
  }

  create(name: string, data: Buffer): Promise<PutResult | 'taken'> {
    return this.writer(`create ${name}`).create(name, data);
  }

  remove(name: string): Promise<void> {
    return this.writer(`remove ${name}`).remove(name);
  }

  checkWritable(): Promise<void> {
    return this.writer('write').checkWritable();
  }

  now(): Promise<Date> {
    return (this.members[0] as FallbackMember).storage.now();
  }

  /** Writes go to the one member; a set of several is for reading (each repository is written by its own writer). */
  private writer(what: string): Storage {
    const single = this.single;
    if (single) return single.storage;
    throw new PitrError('Internal', `cannot ${what}: the repositories ${this.location} are open for reading only`);
  }
}

const describe = (m: { name: string; storage: Storage }): string => `${m.name} (${m.storage.location})`;

/** Names sort as storages list them: by code unit, like GCS and the local driver. */
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function problemOf(check: ObjectCheck, bytes: Buffer): string | undefined {
  switch (check.kind) {
    case 'none':
      return undefined;
    case 'whole':
      return check.intact(bytes) ? undefined : 'is damaged: it fails its own checksum';
    case 'digest':
      if (bytes.length !== check.size) return `is damaged: ${bytes.length} bytes, its manifest says ${check.size}`;
      return createHash('sha256').update(bytes).digest('hex') === check.sha256 ? undefined : 'is damaged: its sha256 does not match its manifest';
    default: {
      const never: never = check;
      return never;
    }
  }
}
