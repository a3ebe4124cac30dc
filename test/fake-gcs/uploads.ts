import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { crc32cBase64 } from './crc32c';
import { parseMultipart, type Reply } from './http-util';
import { md5Base64, PreconditionFailed, type FakeObject, type ObjectStore } from './object-store';

/** Fields of the client-sent object resource that the fake honours. */
interface ClientMetadata {
  name?: string;
  contentType?: string;
  md5Hash?: string;
  crc32c?: string;
  storageClass?: string;
}

interface Session {
  bucket: string;
  name: string;
  metadata: ClientMetadata;
  ifGenerationMatch: number | undefined;
  chunks: Buffer[];
  received: number;
  /** Set once finalized, so status queries and late chunks see the outcome. */
  result?: FakeObject;
}

export interface UploadRequest {
  req: IncomingMessage;
  bucket: string;
  query: Record<string, string>;
  body: Buffer;
  reply: Reply;
  /** Corrupt the payload before validation (fault injection). */
  tamper: boolean;
}

/** Simple (multipart) and resumable uploads, with precondition and digest checks as GCS does them. */
export class Uploads {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly store: ObjectStore,
    private readonly baseUrl: () => string,
    private readonly resource: (object: FakeObject) => unknown,
    /** Why the bucket refuses this storage class, or undefined when it accepts it. */
    private readonly storageClassProblem: (bucket: string, storageClass: string) => string | undefined,
  ) {}

  multipart(u: UploadRequest): void {
    const parts = parseMultipart(u.body, u.req.headers['content-type'] ?? '');
    const [metaPart, mediaPart] = parts;
    if (!metaPart || !mediaPart) return u.reply.error(400, 'multipart upload needs a metadata part and a media part');
    const metadata = parseMetadata(metaPart.body);
    const name = u.query.name ?? metadata.name;
    if (!name) return u.reply.error(400, 'Required parameter: name', 'required');
    if (this.refusedClass(u, metadata)) return;
    const data = u.tamper ? flipByte(mediaPart.body) : mediaPart.body;
    this.commit(u, name, data, metadata, generationParam(u.query));
  }

  startResumable(u: UploadRequest): void {
    const metadata = u.body.length > 0 ? parseMetadata(u.body) : {};
    const name = u.query.name ?? metadata.name;
    if (!name) return u.reply.error(400, 'Required parameter: name', 'required');
    if (this.refusedClass(u, metadata)) return;
    const ifGenerationMatch = generationParam(u.query);
    try {
      this.store.checkPrecondition(u.bucket, name, ifGenerationMatch);
    } catch (error) {
      if (error instanceof PreconditionFailed) return preconditionFailed(u.reply);
      throw error;
    }
    const id = randomUUID();
    this.sessions.set(id, { bucket: u.bucket, name, metadata, ifGenerationMatch, chunks: [], received: 0 });
    const location = `${this.baseUrl()}/upload/storage/v1/b/${encodeURIComponent(u.bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    u.reply.send(200, { location }, '');
  }

  /** PUT to a session URI: a chunk, the final chunk, or a status query (`bytes *\/*`). */
  resumableChunk(u: UploadRequest): void {
    const session = this.sessions.get(u.query.upload_id ?? '');
    if (!session) return u.reply.error(404, 'No such upload session', 'notFound');
    if (session.result) return u.reply.json(200, this.resource(session.result));
    const range = parseContentRange(u.req.headers['content-range'], session.received, u.body.length);
    if (!range) return u.reply.error(400, `Invalid Content-Range: ${u.req.headers['content-range'] ?? ''}`);
    if (range.start !== undefined) {
      // A chunk beyond what we hold is not accepted; the client learns the real offset from the 308.
      if (range.start > session.received) return this.incomplete(u.reply, session);
      const fresh = u.body.subarray(session.received - range.start);
      if (fresh.length > 0) {
        session.chunks.push(u.tamper ? flipByte(fresh) : fresh);
        session.received += fresh.length;
      }
    }
    if (range.total !== undefined && session.received > range.total) return u.reply.error(400, 'upload is larger than its declared size');
    if (range.total === undefined || session.received < range.total) return this.incomplete(u.reply, session);
    const data = Buffer.concat(session.chunks);
    const object = this.commit(u, session.name, data, session.metadata, session.ifGenerationMatch);
    if (object) session.result = object;
    else this.sessions.delete(u.query.upload_id ?? '');
  }

  /** Answers 400 when the bucket refuses the storage class the client asked for. */
  private refusedClass(u: UploadRequest, metadata: ClientMetadata): boolean {
    const problem = metadata.storageClass === undefined ? undefined : this.storageClassProblem(u.bucket, metadata.storageClass);
    if (problem) u.reply.error(400, problem, 'invalid');
    return problem !== undefined;
  }

  private incomplete(reply: Reply, session: Session): void {
    const headers: Record<string, string> = session.received > 0 ? { range: `bytes=0-${session.received - 1}` } : {};
    reply.send(308, headers, '');
  }

  private commit(u: UploadRequest, name: string, data: Buffer, metadata: ClientMetadata, ifGenerationMatch: number | undefined): FakeObject | undefined {
    const problem = digestProblem(data, metadata, headerValue(u.req.headers['x-goog-hash']));
    if (problem) {
      u.reply.error(400, problem, 'invalid');
      return undefined;
    }
    try {
      const object = this.store.put(u.bucket, name, data, {
        ifGenerationMatch,
        contentType: metadata.contentType,
        ...(metadata.storageClass ? { storageClass: metadata.storageClass } : {}),
      });
      u.reply.json(200, this.resource(object));
      return object;
    } catch (error) {
      if (!(error instanceof PreconditionFailed)) throw error;
      preconditionFailed(u.reply);
      return undefined;
    }
  }
}

function preconditionFailed(reply: Reply): void {
  reply.error(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet');
}

/**
 * What the Content-Range of a resumable PUT says. `start` is absent for status queries (`bytes *\/...`);
 * `total` is absent while the client does not yet know the size. No header means "this is everything".
 */
function parseContentRange(header: string | undefined, received: number, bodyLength: number): { start?: number; total?: number } | undefined {
  if (header === undefined) return { start: received, total: received + bodyLength };
  const query = /^bytes \*\/(\d+|\*)$/.exec(header);
  if (query) return { total: query[1] === '*' ? undefined : Number(query[1]) };
  // The client sends `bytes 0--1/0` for an empty final chunk and `bytes N-*/*` for a single streamed request.
  const chunk = /^bytes (\d+)-(-?\d+|\*)\/(\d+|\*)$/.exec(header);
  if (!chunk) return undefined;
  const start = Number(chunk[1]);
  if (chunk[3] !== '*') return { start, total: Number(chunk[3]) };
  return { start, total: chunk[2] === '*' ? start + bodyLength : undefined };
}

function digestProblem(data: Buffer, metadata: ClientMetadata, hashHeader: string | undefined): string | undefined {
  const expected: { md5?: string; crc32c?: string } = { md5: metadata.md5Hash, crc32c: metadata.crc32c };
  for (const pair of hashHeader?.split(',') ?? []) {
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq).trim();
    if (key === 'md5' || key === 'crc32c') expected[key] = pair.slice(eq + 1).trim();
  }
  const md5 = md5Base64(data);
  if (expected.md5 !== undefined && expected.md5 !== md5) return `Provided MD5 hash "${expected.md5}" doesn't match calculated MD5 hash "${md5}".`;
  const crc = crc32cBase64(data);
  if (expected.crc32c !== undefined && expected.crc32c !== crc) return `Provided CRC32C "${expected.crc32c}" doesn't match calculated CRC32C "${crc}".`;
  return undefined;
}

function parseMetadata(body: Buffer): ClientMetadata {
  const value: unknown = JSON.parse(body.toString('utf8'));
  if (typeof value !== 'object' || value === null) return {};
  const record = value as Record<string, unknown>;
  const text = (key: string): string | undefined => (typeof record[key] === 'string' ? record[key] : undefined);
  return { name: text('name'), contentType: text('contentType'), md5Hash: text('md5Hash'), crc32c: text('crc32c'), storageClass: text('storageClass') };
}

function generationParam(query: Record<string, string>): number | undefined {
  return query.ifGenerationMatch === undefined ? undefined : Number(query.ifGenerationMatch);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

function flipByte(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  if (copy.length === 0) return Buffer.from([0]);
  const i = Math.floor(copy.length / 2);
  copy[i] = (copy[i] ?? 0) ^ 0xff;
  return copy;
}
