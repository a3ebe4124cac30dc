import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { PitrError } from '../../errors';
import type { ListOptions, ListResult, ObjectInfo, PutResult, PutSource, Storage } from '../storage';

const TMP_DIR = '.tmp';

/**
 * A repository in a local directory. Create-only durable writes: bytes go to a temporary file in the
 * repository, which is fsynced, then hard-linked to its final name (link fails if the name exists, so
 * nothing is ever replaced), then the directory is fsynced.
 */
export class LocalStorage implements Storage {
  readonly location: string;
  readonly rereadIsCheap = true;

  constructor(private readonly root: string) {
    this.location = path.resolve(root);
  }

  private file(name: string): string {
    if (name.startsWith('/') || name.split('/').includes('..')) throw new PitrError('Internal', `invalid object name ${name}`);
    return path.join(this.location, ...name.split('/'));
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
    const target = this.file(name);
    await this.mkdirp(path.dirname(target));
    const tmp = await this.stage(source);
    let result: PutResult | 'taken' = 'created';
    try {
      await fs.link(tmp, target);
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
      return await fs.readFile(this.file(name));
    } catch (error) {
      throw this.wrap(error, `cannot read ${name}`, name);
    }
  }

  readStream(name: string, range?: { start: number; end?: number }): Readable {
    const out = new PassThrough();
    const file = createReadStream(this.file(name), range ? { start: range.start, end: range.end } : {});
    file.on('error', (error) => out.destroy(this.wrap(error, `cannot read ${name}`, name)));
    return file.pipe(out);
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    try {
      const info = await fs.stat(this.file(name));
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
    const walk = async (relDir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(path.join(this.location, ...relDir.split('/').filter(Boolean)), { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw this.wrap(error, `cannot list ${relDir || '/'}`);
      }
      for (const entry of entries) {
        const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
        if (rel === TMP_DIR) continue;
        if (entry.isDirectory()) {
          const dirPrefix = rel + '/';
          if (!dirPrefix.startsWith(prefix) && !prefix.startsWith(dirPrefix)) continue;
          // every name inside sorts before startAfter: skip the directory without reading it
          if (after !== undefined && dirPrefix < after && !after.startsWith(dirPrefix)) continue;
          if (options.delimiter && dirPrefix.startsWith(prefix) && dirPrefix.length > prefix.length) prefixes.add(dirPrefix);
          else await walk(rel);
        } else if (entry.isFile() && rel.startsWith(prefix) && (after === undefined || rel > after)) {
          // removed since the directory was read (a concurrent prune or catalog trim): not listed, as GCS would not
          const info = await fs.stat(path.join(this.location, ...rel.split('/'))).catch((error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT') return null;
            throw this.wrap(error, `cannot list ${rel}`);
          });
          if (info) objects.push({ name: rel, size: info.size });
        }
      }
    };
    await walk(dirName);
    objects.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { objects, prefixes: [...prefixes].filter((p) => after === undefined || p > after).sort() };
  }

  async remove(name: string): Promise<void> {
    await fs.rm(this.file(name), { force: true });
    // prune directories the removal left empty, so listings do not show them as prefixes
    let dir = path.dirname(this.file(name));
    while (dir.startsWith(this.location + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        break; // not empty (or already gone)
      }
      dir = path.dirname(dir);
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
      await fs.mkdir(dir, { recursive: true });
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

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
