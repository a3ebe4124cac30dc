import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { PitrError } from '../../errors';
import type { ListOptions, ListResult, ObjectInfo, PutResult, PutSource, Storage } from '../storage';
import { flatPathOf, folderKey, localPathOf } from './local-layout';

const TMP_DIR = '.tmp';

/**
 * A repository in a local directory. Create-only durable writes: bytes go to a temporary file in the
 * repository, which is fsynced, then hard-linked to its final name (link fails if the name exists, so
 * nothing is ever replaced), then the directory is fsynced. Segments sit in fan-out folders
 * (local-layout.ts); those of a repository written before them are found flat in their HI folder.
 */
export class LocalStorage implements Storage {
  readonly location: string;
  readonly rereadIsCheap = true;

  constructor(private readonly root: string) {
    this.location = path.resolve(root);
  }

  private file(name: string): string {
    if (name.startsWith('/') || name.split('/').includes('..')) throw new PitrError('Internal', `invalid object name ${name}`);
    return path.join(this.location, ...localPathOf(name));
  }

  /** Where the object sat before fan-out folders, when that differs from file(name). */
  private flatFile(name: string): string | undefined {
    const flat = flatPathOf(name);
    return flat && path.join(this.location, ...flat);
  }

  /** `op` on the object's file; on a file not found there, on the flat file of a repository written before fan-out folders. */
  private async atEither<T>(name: string, op: (file: string) => Promise<T>): Promise<T> {
    try {
      return await op(this.file(name));
    } catch (error) {
      const flat = this.flatFile(name);
      if (flat === undefined || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return op(flat);
    }
  }

  async put(name: string, source: PutSource): Promise<PutResult> {
    const result = await this.link(name, source);
    if (result !== 'taken') return result;
    throw new PitrError(
      'Integrity',
      `object ${name} already exists in ${this.location} with different content`,
      'an archived object is never overwritten: another archiver may be writing to this repository, or the object is corrupt; see docs/runbooks/different-content.md and run "pitr verify"',
    );
  }

  create(name: string, data: Buffer): Promise<PutResult | 'taken'> {
    return this.link(name, { kind: 'buffer', data });
  }

  /**
   * Directories made (or found) by this instance: a put into one of them makes none. One removed since (a
   * repository moved away, a directory emptied and removed) fails the put once; then they are all made again.
   */
  private readonly madeDirs = new Set<string>();

  private async link(name: string, source: PutSource): Promise<PutResult | 'taken'> {
    try {
      return await this.linkOnce(name, source);
    } catch (error) {
      const code = ((error as { cause?: NodeJS.ErrnoException }).cause ?? (error as NodeJS.ErrnoException)).code;
      if (this.madeDirs.size === 0 || (code !== 'ENOENT' && code !== 'ENOTDIR')) throw error;
      this.madeDirs.clear();
      return this.linkOnce(name, source);
    }
  }

  /** Stages the bytes and links them to `name`: link() fails when the name exists, so nothing is replaced. */
  private async linkOnce(name: string, source: PutSource): Promise<PutResult | 'taken'> {
    // stored flat by an earlier version: that file is the object
    const flat = this.flatFile(name);
    const stored = flat !== undefined && (await fileExists(flat)) ? flat : undefined;
    const target = this.file(name);
    if (stored === undefined) await this.mkdirp(path.dirname(target));
    const tmp = await this.stage(source);
    let result: PutResult | 'taken' = 'created';
    try {
      if (stored !== undefined) result = (await sameContent(tmp, stored)) ? 'identical' : 'taken';
      else await fs.link(tmp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw this.wrap(error, `cannot write ${name}`);
      result = (await sameContent(tmp, target)) ? 'identical' : 'taken';
    } finally {
      await fs.rm(tmp, { force: true });
    }
    if (result === 'created') await fsyncDir(path.dirname(target));
    // an owned source goes once its bytes are stored (and stays for a retry when they are not)
    if (result !== 'taken' && source.kind === 'file' && source.consume) await fs.rm(source.path, { force: true });
    return result;
  }

  /** Copies (or, for an owned file, moves) the source into the repository's temp dir and fsyncs it. */
  private async stage(source: PutSource): Promise<string> {
    const dir = path.join(this.location, TMP_DIR);
    await this.mkdirp(dir);
    const tmp = path.join(dir, `${process.pid}-${randomBytes(8).toString('hex')}`);
    try {
      if (source.kind === 'buffer') {
        // one handle: written, flushed, closed
        const handle = await fs.open(tmp, 'wx');
        try {
          await handle.writeFile(source.data);
          await handle.sync();
        } finally {
          await handle.close();
        }
        return tmp;
      }
      if (source.consume) await fs.link(source.path, tmp).catch(() => fs.copyFile(source.path, tmp));
      else await fs.copyFile(source.path, tmp);
      const handle = await fs.open(tmp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      return tmp;
    } catch (error) {
      await fs.rm(tmp, { force: true });
      throw this.wrap(error, 'cannot write to the repository');
    }
  }

  async read(name: string): Promise<Buffer> {
    try {
      return await this.atEither(name, (file) => fs.readFile(file));
    } catch (error) {
      throw this.wrap(error, `cannot read ${name}`, name);
    }
  }

  readStream(name: string, range?: { start: number; end?: number }): Readable {
    const out = new PassThrough();
    const failed = (error: unknown): void => void out.destroy(this.wrap(error, `cannot read ${name}`, name));
    this.atEither(name, (file) => fs.open(file, 'r')).then((handle) => {
      if (out.destroyed) return void handle.close().catch(() => undefined);
      const file = handle.createReadStream(range ? { start: range.start, end: range.end } : {});
      file.on('error', failed);
      out.on('close', () => file.destroy());
      file.pipe(out);
    }, failed);
    return out;
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const info = await this.atEither(name, (file) => fs.stat(file));
      return { name, size: info.size, modifiedAt: info.mtime };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.wrap(error, `cannot stat ${name}`);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    // Walk only the directory the prefix points into, then filter by the rest of the prefix.
    const slash = prefix.lastIndexOf('/');
    const dirName = slash === -1 ? '' : prefix.slice(0, slash);
    const objects: ObjectInfo[] = [];
    const prefixes = new Set<string>();
    const after = options.startAfter;
    /** Lists folder `physical`, whose files are objects named `keyDir/<file>`; in a fan-out folder (`within`), those whose names start with it. */
    const walk = async (physical: string, keyDir: string, within?: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(path.join(this.location, ...physical.split('/').filter(Boolean)), { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw this.wrap(error, `cannot list ${physical || '/'}`);
      }
      for (const entry of entries) {
        const file = physical ? `${physical}/${entry.name}` : entry.name;
        if (file === TMP_DIR) continue;
        if (entry.isDirectory() && within === undefined) {
          const folder = folderKey(keyDir, entry.name);
          if (!folder.prefix.startsWith(prefix) && !prefix.startsWith(folder.prefix)) continue;
          // every name inside sorts before startAfter: skip the directory without reading it
          if (after !== undefined && folder.prefix < after && !after.startsWith(folder.prefix)) continue;
          if (folder.fanOut) await walk(file, keyDir, entry.name);
          else if (options.delimiter && folder.prefix.startsWith(prefix) && folder.prefix.length > prefix.length) prefixes.add(folder.prefix);
          else await walk(file, folder.prefix.slice(0, -1));
          continue;
        }
        if (!entry.isFile() || (within !== undefined && !entry.name.startsWith(within))) continue;
        const name = keyDir ? `${keyDir}/${entry.name}` : entry.name;
        if (!name.startsWith(prefix) || (after !== undefined && name <= after)) continue;
        // removed since the directory was read (a concurrent prune or catalog trim): not listed, as GCS would not
        const info = await fs.stat(path.join(this.location, ...file.split('/'))).catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return null;
          throw this.wrap(error, `cannot list ${name}`);
        });
        if (info) objects.push({ name, size: info.size });
      }
    };
    await walk(dirName, dirName);
    objects.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { objects, prefixes: [...prefixes].filter((p) => after === undefined || p > after).sort() };
  }

  async remove(name: string): Promise<void> {
    const flat = this.flatFile(name);
    for (const file of flat === undefined ? [this.file(name)] : [this.file(name), flat]) {
      await fs.rm(file, { force: true });
      // prune directories the removal left empty, so listings do not show them as prefixes
      let dir = path.dirname(file);
      while (dir.startsWith(this.location + path.sep)) {
        try {
          await fs.rmdir(dir);
        } catch {
          break; // not empty (or already gone)
        }
        dir = path.dirname(dir);
      }
    }
  }

  async checkWritable(): Promise<void> {
    await this.mkdirp(this.location);
    const probe = await this.stage({ kind: 'buffer', data: Buffer.from('probe') });
    await fs.rm(probe, { force: true });
  }

  async now(): Promise<Date> {
    const probe = await this.stage({ kind: 'buffer', data: Buffer.from('clock') });
    try {
      return (await fs.stat(probe)).mtime;
    } finally {
      await fs.rm(probe, { force: true });
    }
  }

  private async mkdirp(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    try {
      const first = await fs.mkdir(dir, { recursive: true });
      // a new directory's entry is durable once its parent is synced: else a crash could take a stored object with it
      if (first !== undefined)
        for (let made = dir; ; made = path.dirname(made)) {
          await fsyncDir(path.dirname(made));
          if (made === first || path.dirname(made) === made) break;
        }
    } catch (error) {
      throw this.wrap(error, `cannot create directory ${dir}`);
    }
    if (this.madeDirs.size > 10_000) this.madeDirs.clear();
    this.madeDirs.add(dir);
  }

  private wrap(error: unknown, what: string, name?: string): PitrError {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && name !== undefined) return new PitrError('NotFound', `object ${name} not found in ${this.location}`, undefined, { cause: error });
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
      return new PitrError(
        'Repository',
        `${what}: repository ${this.location} is not writable (${code})`,
        'check the directory permissions and the user pitr runs as',
        { cause: error },
      );
    if (code === 'ENOTDIR' || code === 'EEXIST')
      return new PitrError('Repository', `${what}: a part of the repository path ${this.location} is a file, not a directory`, 'point --repo at a directory', {
        cause: error,
      });
    if (code === 'ENOSPC' || code === 'EDQUOT')
      return new PitrError(
        'Repository',
        `${what}: no space left in repository ${this.location}`,
        'free space or point --repo elsewhere; nothing was acknowledged past what is stored',
        { cause: error },
      );
    return new PitrError('Repository', `${what} in ${this.location}: ${(error as Error).message}`, undefined, { cause: error });
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fs.stat(a), fs.stat(b)]);
  if (sa.size !== sb.size) return false;
  const [ha, hb] = await Promise.all([hashFile(a), hashFile(b)]);
  return ha === hb;
}

export async function hashFile(file: string, algorithm = 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function fileExists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return false; // a ENOTDIR put fails next, with its own message
      throw error;
    },
  );
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
