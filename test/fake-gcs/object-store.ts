import { createHash } from 'node:crypto';
import { crc32cBase64 } from './crc32c';

/** One stored object version, as the fake server keeps it. */
export interface FakeObject {
  bucket: string;
  name: string;
  data: Buffer;
  generation: number;
  contentType: string;
  /** Stored digests; `corrupt` changes `data` but not these, like bit rot under a real store. */
  md5Hash: string;
  crc32c: string;
  created: Date;
  /** As given at upload (default STANDARD); a lifecycle transition changes it, never the bytes or digests. */
  storageClass: string;
}

export interface ListPage {
  items: FakeObject[];
  prefixes: string[];
  nextPageToken?: string;
}

export class PreconditionFailed extends Error {}

export function md5Base64(data: Uint8Array): string {
  return createHash('md5').update(data).digest('base64');
}

/** One bucket: its objects by name, and their names in GCS order, so that a listing costs its page, not the bucket. */
interface Bucket {
  objects: Map<string, FakeObject>;
  names: string[];
}

/** In-memory buckets of objects. Buckets spring into existence on first write. */
export class ObjectStore {
  private readonly buckets = new Map<string, Bucket>();
  private nextGeneration = 1_700_000_000_000_000;

  get(bucket: string, name: string): FakeObject | undefined {
    return this.buckets.get(bucket)?.objects.get(name);
  }

  /** Stores a new generation; `ifGenerationMatch` 0 means "only if absent", as in GCS. */
  put(bucket: string, name: string, data: Buffer, opts: { ifGenerationMatch?: number; contentType?: string; storageClass?: string } = {}): FakeObject {
    this.checkPrecondition(bucket, name, opts.ifGenerationMatch);
    const object: FakeObject = {
      bucket,
      name,
      data,
      generation: this.nextGeneration++,
      contentType: opts.contentType ?? 'application/octet-stream',
      md5Hash: md5Base64(data),
      crc32c: crc32cBase64(data),
      created: new Date(),
      storageClass: opts.storageClass ?? 'STANDARD',
    };
    const b = this.bucketOf(bucket);
    if (!b.objects.has(name))
      b.names.splice(
        firstIndex(b.names, (n) => compareNames(n, name) >= 0),
        0,
        name,
      );
    b.objects.set(name, object);
    return object;
  }

  checkPrecondition(bucket: string, name: string, ifGenerationMatch: number | undefined): void {
    if (ifGenerationMatch === undefined) return;
    const current = this.get(bucket, name)?.generation ?? 0;
    if (current !== ifGenerationMatch) throw new PreconditionFailed(`generation ${current} is not ${ifGenerationMatch}`);
  }

  delete(bucket: string, name: string): boolean {
    const b = this.buckets.get(bucket);
    if (!b?.objects.delete(name)) return false;
    b.names.splice(
      firstIndex(b.names, (n) => compareNames(n, name) >= 0),
      1,
    );
    return true;
  }

  /**
   * One page of a listing. Objects and folded prefixes form one ordered sequence, paged together; the page
   * token is the last key returned, so a listing stays consistent while objects come and go. The walk starts
   * at the first name the query can return and jumps over each folded prefix, as an ordered store does.
   */
  list(bucket: string, q: { prefix: string; delimiter?: string; pageToken?: string; startOffset?: string; maxResults: number }): ListPage {
    const names = this.buckets.get(bucket)?.names ?? [];
    const token = q.pageToken === undefined ? undefined : Buffer.from(q.pageToken, 'base64url').toString('utf8');
    let from = q.prefix;
    if (q.startOffset !== undefined && compareNames(q.startOffset, from) > 0) from = q.startOffset;
    let i = firstIndex(names, (n) => compareNames(n, from) >= 0);
    if (token !== undefined)
      i = Math.max(
        i,
        firstIndex(names, (n) => compareNames(n, token) > 0 && !isUnder(n, token, q.delimiter)),
      );
    const page: ListPage = { items: [], prefixes: [] };
    let last: string | undefined;
    while (i < names.length) {
      const name = names[i] as string;
      if (!name.startsWith(q.prefix)) break;
      const rest = name.slice(q.prefix.length);
      const cut = q.delimiter ? rest.indexOf(q.delimiter) : -1;
      const key = cut >= 0 ? q.prefix + rest.slice(0, cut + (q.delimiter as string).length) : name;
      if (page.items.length + page.prefixes.length === q.maxResults) {
        if (last !== undefined) page.nextPageToken = Buffer.from(last).toString('base64url');
        break;
      }
      last = key;
      if (cut >= 0) {
        page.prefixes.push(key);
        i = firstIndex(names, (n) => compareNames(n, key) > 0 && !n.startsWith(key));
      } else {
        page.items.push(this.buckets.get(bucket)?.objects.get(name) as FakeObject);
        i += 1;
      }
    }
    return page;
  }

  private bucketOf(bucket: string): Bucket {
    let b = this.buckets.get(bucket);
    if (!b) {
      b = { objects: new Map(), names: [] };
      this.buckets.set(bucket, b);
    }
    return b;
  }
}

/** Whether `name` is folded into the prefix `key` (a key that ends with the delimiter). */
function isUnder(name: string, key: string, delimiter: string | undefined): boolean {
  return delimiter !== undefined && key.endsWith(delimiter) && name.startsWith(key);
}

/** The first index of the sorted `names` where `after` holds (it holds from some index on), or their length. */
function firstIndex(names: readonly string[], after: (name: string) => boolean): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (after(names[mid] as string)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The JSON object resource GCS answers with (numbers as strings, as GCS sends them). */
export function objectResource(object: FakeObject, baseUrl: string): Record<string, unknown> {
  const created = object.created.toISOString();
  return {
    kind: 'storage#object',
    id: `${object.bucket}/${object.name}/${object.generation}`,
    selfLink: `${baseUrl}/storage/v1/b/${encodeURIComponent(object.bucket)}/o/${encodeURIComponent(object.name)}`,
    name: object.name,
    bucket: object.bucket,
    generation: String(object.generation),
    metageneration: '1',
    contentType: object.contentType,
    storageClass: object.storageClass,
    size: String(object.data.length),
    md5Hash: object.md5Hash,
    crc32c: object.crc32c,
    etag: `CK${object.generation}`,
    timeCreated: created,
    updated: created,
  };
}

/** GCS orders names by their UTF-8 bytes. */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
