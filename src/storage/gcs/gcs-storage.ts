import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import type { Bucket, File } from '@google-cloud/storage';
import { messageOf, PitrError } from '../../errors';
import type { ListOptions, ListResult, ObjectInfo, PutResult, PutSource, Storage } from '../storage';
import { openBucket } from './gcs-client';
import { GaveUp, isBucketMissing, isDownloadMismatch, isStorageClassRefused, isTransient, serverMessage, statusOf, toPitrError } from './gcs-errors';
import { fetchMetadata, objectInfo } from './gcs-metadata';
import { resumingReadStream } from './gcs-read-stream';
import { retry, retryPolicy, type RetryOptions, type RetryPolicy } from './gcs-retry';
import { createAttempt, digestOf, type Digest, type UploadPlan, type UploadSession } from './gcs-upload';

const MiB = 1024 * 1024;

export interface GcsStorageOptions {
  bucket: string;
  /** Folder inside the bucket, '' for the bucket root; object names are prefix + '/' + name. */
  prefix: string;
  /** Endpoint of an emulator or private endpoint; default STORAGE_EMULATOR_HOST, else Google with ADC. */
  apiEndpoint?: string;
  projectId?: string;
  retry?: RetryOptions;
  /** Timeout of each HTTP request (each resumable chunk), default 60 s. */
  timeoutMs?: number;
  /** Uploads larger than this are resumable, smaller ones a single request (default 8 MiB). */
  resumableThresholdBytes?: number;
  /** Bytes per resumable upload request, a multiple of 256 KiB (default 8 MiB). */
  chunkSizeBytes?: number;
  /**
   * Storage class of every object this driver creates (the JSON API's `storageClass` on insert); absent:
   * the bucket's default class. A lifecycle rule may change it later without changing bytes or checksums.
   */
  storageClass?: string;
}

/**
 * A repository in a Google Cloud Storage bucket. Puts are create-only (ifGenerationMatch=0) with an MD5
 * the server validates; transient failures are retried with backoff, and a put whose earlier attempt did
 * land is recognised by its identical content.
 */
export class GcsStorage implements Storage {
  readonly location: string;
  private readonly bucket: Bucket;
  private readonly root: string;
  private readonly policy: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly resumableThreshold: number;
  private readonly chunkSize: number;
  private readonly storageClass: string | undefined;

  constructor(options: GcsStorageOptions) {
    if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(options.bucket)) {
      throw new PitrError(
        'Usage',
        `invalid bucket name ${JSON.stringify(options.bucket)}`,
        'bucket names are 3 to 222 lowercase letters, digits, dots, dashes and underscores',
      );
    }
    const prefix = options.prefix.replace(/^\/+|\/+$/g, '');
    this.root = prefix ? `${prefix}/` : '';
    this.location = `gs://${options.bucket}${prefix ? `/${prefix}` : ''}`;
    this.policy = retryPolicy(options.retry);
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.resumableThreshold = options.resumableThresholdBytes ?? 8 * MiB;
    this.chunkSize = options.chunkSizeBytes ?? 8 * MiB;
    this.storageClass = options.storageClass;
    this.bucket = openBucket({
      bucket: options.bucket,
      apiEndpoint: options.apiEndpoint,
      projectId: options.projectId,
      timeoutMs: this.timeoutMs,
    });
  }

  async put(name: string, source: PutSource): Promise<PutResult> {
    const result = await this.upload(name, source);
    if (result !== 'taken') return result;
    throw new PitrError(
      'Integrity',
      `object ${name} already exists in ${this.location} with different content`,
      'an archived object is never overwritten: another archiver may be writing to this repository, or the object is corrupt; see docs/runbooks/different-content.md and run "pitr verify"',
    );
  }

  create(name: string, data: Buffer): Promise<PutResult | 'taken'> {
    return this.upload(name, { kind: 'buffer', data });
  }

  /** A create-only upload: 'taken' when another object holds the name (compared after a 412). */
  private async upload(name: string, source: PutSource): Promise<PutResult | 'taken'> {
    this.file(name); // validate the name before reading anything
    let digest: Digest;
    try {
      digest = await digestOf(source);
    } catch (error) {
      const what = source.kind === 'file' ? source.path : 'buffer';
      throw new PitrError('Internal', `cannot read ${what} to upload ${name}: ${messageOf(error)}`);
    }
    const resumable = digest.size > this.resumableThreshold;
    const plan: UploadPlan = {
      digest,
      resumable,
      chunkSize: this.chunkSize,
      timeoutMs: this.timeoutMs,
      ...(this.storageClass ? { storageClass: this.storageClass } : {}),
    };
    // An object deleted between our 412 and our stat is simply uploaded again; a few rounds cover any race.
    for (let round = 1; round <= 3; round++) {
      const session: UploadSession = {}; // shared by the attempts, so a retry resumes the same upload
      const outcome = await this.run(`upload of ${name}`, (attempt) => createAttempt(this.file(name), source, plan, session, attempt), this.uploadError);
      const result = outcome === 'created' ? 'created' : await this.compareExisting(name, digest);
      if (result === undefined) continue;
      if (result !== 'taken' && source.kind === 'file' && source.consume) await fs.rm(source.path, { force: true });
      return result;
    }
    throw new PitrError(
      'Repository',
      `object ${name} in ${this.location} keeps disappearing while being uploaded`,
      'another process is deleting objects in this repository',
    );
  }

  /** After a 412: 'identical' when the stored object has our bytes, 'taken' when not, undefined when it vanished meanwhile. */
  private async compareExisting(name: string, digest: Digest): Promise<PutResult | 'taken' | undefined> {
    const existing = await this.stat(name);
    if (!existing) return undefined;
    return existing.md5 === digest.md5 && existing.size === digest.size ? 'identical' : 'taken';
  }

  async read(name: string): Promise<Buffer> {
    const file = this.file(name);
    return this.run(`read of ${name}`, async () => {
      try {
        const [data] = await file.download();
        return data;
      } catch (error) {
        throw this.readError(error, name) ?? error;
      }
    });
  }

  readStream(name: string, range?: { start: number; end?: number }): Readable {
    const file = this.file(name);
    return resumingReadStream(
      (r) => file.createReadStream(r ? { start: r.start, ...(r.end !== undefined ? { end: r.end } : {}) } : {}),
      range,
      this.policy,
      (error, attempts) =>
        this.readError(error, name) ?? toPitrError(isTransient(error) ? new GaveUp(error, attempts) : error, `read of ${name}`, this.location),
    );
  }

  async stat(name: string): Promise<ObjectInfo | null> {
    const file = this.file(name);
    const metadata = await this.run(`stat of ${name}`, () => fetchMetadata(file));
    if (!metadata) return null;
    return objectInfo(name, metadata);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    const after = options.startAfter;
    const result: ListResult = { objects: [], prefixes: [] };
    let pageToken: string | undefined;
    do {
      const query = {
        prefix: this.root + prefix,
        autoPaginate: false, // page by page, so that each page is retried on its own
        ...(options.delimiter ? { delimiter: options.delimiter } : {}),
        // GCS starts a listing at startOffset inclusive; the name itself is dropped below
        ...(after !== undefined ? { startOffset: this.root + after } : {}),
        ...(pageToken ? { pageToken } : {}),
      };
      const [files, , response] = await this.run(`listing of ${prefix || '/'}`, () => this.bucket.getFiles(query));
      for (const f of files) {
        const name = f.name.slice(this.root.length);
        if (after === undefined || name > after) result.objects.push(objectInfo(name, f.metadata));
      }
      const page = response as { prefixes?: unknown; nextPageToken?: unknown } | undefined;
      if (Array.isArray(page?.prefixes)) {
        for (const p of page.prefixes)
          if (typeof p === 'string' && (after === undefined || p.slice(this.root.length) > after)) result.prefixes.push(p.slice(this.root.length));
      }
      pageToken = typeof page?.nextPageToken === 'string' ? page.nextPageToken : undefined;
    } while (pageToken);
    result.objects.sort((a, b) => compareNames(a.name, b.name));
    result.prefixes.sort(compareNames);
    return result;
  }

  async remove(name: string): Promise<void> {
    const file = this.file(name);
    await this.run(`removal of ${name}`, async () => {
      try {
        await file.delete();
      } catch (error) {
        // Absent is fine, including when an earlier attempt deleted it but its answer was lost.
        if (statusOf(error) !== 404) throw error;
      }
    });
  }

  async checkWritable(): Promise<void> {
    const name = `.probe/${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      await this.put(name, { kind: 'buffer', data: Buffer.from(`pitr write probe ${new Date().toISOString()}\n`) });
      await this.remove(name);
    } catch (error) {
      if (error instanceof PitrError && (error.kind === 'Repository' || error.kind === 'Connection')) {
        throw new PitrError(
          error.kind,
          `repository ${this.location} is not writable: ${error.message}`,
          error.hint ?? 'check that the bucket exists and that pitr may create and delete objects in it',
        );
      }
      throw error;
    }
  }

  async now(): Promise<Date> {
    const name = `.probe/${hostname()}-${process.pid}-${randomBytes(6).toString('hex')}`;
    await this.put(name, { kind: 'buffer', data: Buffer.from('clock\n') });
    try {
      const info = await this.stat(name);
      if (!info?.modifiedAt) throw new PitrError('Repository', `the storage of ${this.location} gave no time for object ${name}`);
      return info.modifiedAt;
    } finally {
      await this.remove(name).catch(() => undefined);
    }
  }

  private file(name: string): File {
    if (name === '' || name.startsWith('/') || name.split('/').includes('..')) {
      throw new PitrError('Internal', `invalid object name ${name}`);
    }
    return this.bucket.file(this.root + name);
  }

  /** Read failures that have a specific meaning; undefined for the rest. */
  private readError(error: unknown, name: string): PitrError | undefined {
    if (statusOf(error) === 404 && !isBucketMissing(error)) {
      return new PitrError('NotFound', `object ${name} not found in ${this.location}`);
    }
    if (isDownloadMismatch(error)) {
      return new PitrError(
        'Integrity',
        `object ${name} in ${this.location} does not match its stored checksum`,
        'the stored object is corrupt; run "pitr verify" and restore it from another copy if there is one',
      );
    }
    return undefined;
  }

  /** An upload refused because of the storage class asked for (a class the bucket does not allow, e.g. with Autoclass). */
  private readonly uploadError = (error: unknown, what: string): PitrError | undefined => {
    if (!this.storageClass || !isStorageClassRefused(error)) return undefined;
    return new PitrError(
      'Repository',
      `${what} in ${this.location} failed: the bucket refuses storage class ${this.storageClass}: ${serverMessage(error)}`,
      'give the repository a storage class the bucket accepts (storage-class=STANDARD|NEARLINE|COLDLINE|ARCHIVE), or none to use the bucket default; a bucket with Autoclass accepts none',
    );
  };

  private async run<T>(
    what: string,
    operation: (attempt: number) => Promise<T>,
    specific?: (error: unknown, what: string) => PitrError | undefined,
  ): Promise<T> {
    try {
      return await retry(this.policy, operation);
    } catch (error) {
      throw specific?.(error, what) ?? toPitrError(error, what, this.location);
    }
  }
}

/** GCS lists in UTF-8 byte order; so do we, whatever order pages came in. */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
