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

/** In-memory buckets of objects. Buckets spring into existence on first write. */
export class ObjectStore {
  private readonly buckets = new Map<string, Map<string, FakeObject>>();
  private nextGeneration = 1_700_000_000_000_000;

  get(bucket: string, name: string): FakeObject | undefined {
    return this.buckets.get(bucket)?.get(name);
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
    this.bucketMap(bucket).set(name, object);
    return object;
  }

  checkPrecondition(bucket: string, name: string, ifGenerationMatch: number | undefined): void {
    if (ifGenerationMatch === undefined) return;
    const current = this.get(bucket, name)?.generation ?? 0;
    if (current !== ifGenerationMatch) throw new PreconditionFailed(`generation ${current} is not ${ifGenerationMatch}`);
  }

  delete(bucket: string, name: string): boolean {
    return this.buckets.get(bucket)?.delete(name) ?? false;
  }

  /**
   * One page of a listing. Objects and folded prefixes form one ordered sequence, paged together; the page
   * token is the last key returned, so a listing stays consistent while objects come and go.
   */
  list(bucket: string, q: { prefix: string; delimiter?: string; pageToken?: string; startOffset?: string; maxResults: number }): ListPage {
    const entries = new Map<string, FakeObject | null>(); // key → object, or null for a folded prefix
    const token = q.pageToken === undefined ? undefined : Buffer.from(q.pageToken, 'base64url').toString('utf8');
    for (const object of this.bucketMap(bucket).values()) {
      if (!object.name.startsWith(q.prefix)) continue;
      // filtered before sorting, so that paging through a large bucket stays cheap
      if (q.startOffset !== undefined && compareNames(object.name, q.startOffset) < 0) continue;
      if (token !== undefined && q.delimiter === undefined && compareNames(object.name, token) <= 0) continue;
      const rest = object.name.slice(q.prefix.length);
      const cut = q.delimiter ? rest.indexOf(q.delimiter) : -1;
      if (q.delimiter && cut >= 0) entries.set(q.prefix + rest.slice(0, cut + q.delimiter.length), null);
      else entries.set(object.name, object);
    }
    const keys = [...entries.keys()].sort(compareNames).filter((key) => token === undefined || compareNames(key, token) > 0);
    const pageKeys = keys.slice(0, q.maxResults);
    const page: ListPage = { items: [], prefixes: [] };
    for (const key of pageKeys) {
      const object = entries.get(key);
      if (object) page.items.push(object);
      else page.prefixes.push(key);
    }
    const last = pageKeys[pageKeys.length - 1];
    if (keys.length > pageKeys.length && last !== undefined) page.nextPageToken = Buffer.from(last).toString('base64url');
    return page;
  }

  private bucketMap(bucket: string): Map<string, FakeObject> {
    let map = this.buckets.get(bucket);
    if (!map) {
      map = new Map();
      this.buckets.set(bucket, map);
    }
    return map;
  }
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
