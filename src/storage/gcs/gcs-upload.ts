import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CreateWriteStreamOptions, File } from '@google-cloud/storage';
import { PitrError } from '../../errors';
import type { PutSource } from '../storage';
import { isDigestMismatch, statusOf } from './gcs-errors';
import { fetchMetadata } from './gcs-metadata';

/** What we know about the bytes before sending them: the server checks the MD5, we check the size after. */
export interface Digest {
  md5: string;
  size: number;
}

export async function digestOf(source: PutSource): Promise<Digest> {
  if (source.kind === 'buffer') return { md5: createHash('md5').update(source.data).digest('base64'), size: source.data.length };
  // Stream the file: it may be far larger than we want in memory.
  const hash = createHash('md5');
  let size = 0;
  for await (const chunk of createReadStream(source.path)) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    size += bytes.length;
  }
  return { md5: hash.digest('base64'), size };
}

/** A fresh stream of the source's bytes, for each attempt. */
export function openSource(source: PutSource): Readable {
  return source.kind === 'buffer' ? Readable.from([source.data]) : createReadStream(source.path);
}

/** A resumable upload session that outlives one attempt, so a retry continues where the last one stopped. */
export interface UploadSession {
  uri?: string;
}

export interface UploadPlan {
  digest: Digest;
  resumable: boolean;
  /** Bytes per resumable request (multiple of 256 KiB); bounded so a request timeout is meaningful. */
  chunkSize: number;
  timeoutMs: number;
  /** Storage class set on the object at creation (STANDARD, NEARLINE...); absent: the bucket's default. */
  storageClass?: string;
}

/**
 * One create-only upload attempt (ifGenerationMatch=0, declared md5Hash checked by the server). Returns the
 * metadata the server answered with. Client-side validation is off: on a mismatch the library deletes the
 * object it just wrote, which must never happen to an archived name; the server-side check suffices.
 */
export async function uploadOnce(file: File, source: PutSource, plan: UploadPlan, session: UploadSession): Promise<File['metadata']> {
  const options: CreateWriteStreamOptions = {
    resumable: plan.resumable,
    validation: false,
    contentType: 'application/octet-stream',
    metadata: { md5Hash: plan.digest.md5, ...(plan.storageClass ? { storageClass: plan.storageClass } : {}) },
    preconditionOpts: { ifGenerationMatch: 0 },
    timeout: plan.timeoutMs,
  };
  if (plan.resumable) {
    options.chunkSize = plan.chunkSize;
    if (session.uri) options.uri = session.uri;
  }
  const sink = file.createWriteStream(options);
  sink.on('uri', (uri: unknown) => {
    if (typeof uri === 'string') session.uri = uri;
  });
  await pipeline(openSource(source), sink);
  return file.metadata;
}

/**
 * One attempt at creating the object, for the retry loop: 'exists' when the name is taken (by us, on an
 * earlier attempt whose answer was lost, or by someone else; the caller compares contents).
 */
export async function createAttempt(file: File, source: PutSource, plan: UploadPlan, session: UploadSession, attempt: number): Promise<'created' | 'exists'> {
  // Resuming a session whose last request landed would re-send bytes to a finished upload, and with a
  // streamed source the client then stalls for ever; an existing object is also what a landed-but-unanswered
  // simple upload leaves behind.
  if (attempt > 1 && session.uri && (await fetchMetadata(file))) return 'exists';
  let restarted = false;
  for (;;) {
    try {
      const stored = await uploadOnce(file, source, plan, session);
      if (stored.md5Hash !== plan.digest.md5 || Number(stored.size) !== plan.digest.size) {
        throw new PitrError(
          'Integrity',
          `object gs://${file.bucket.name}/${file.name} was stored with another checksum or size than sent`,
          'run "pitr verify"; the bucket may be served by a misbehaving proxy',
        );
      }
      return 'created';
    } catch (error) {
      const status = statusOf(error);
      if (status === 412) return 'exists';
      if (session.uri && (status === 404 || status === 410 || isDigestMismatch(error))) {
        session.uri = undefined; // the session expired, or holds bad bytes: the next try starts a new one
        if (!restarted && status !== 400) {
          restarted = true; // an expired session costs no attempt
          continue;
        }
      }
      throw error;
    }
  }
}
