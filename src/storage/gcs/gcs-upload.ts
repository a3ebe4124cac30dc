import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CreateWriteStreamOptions, File } from '@google-cloud/storage';
import type { PutSource } from '../storage';

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
    metadata: { md5Hash: plan.digest.md5 },
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
