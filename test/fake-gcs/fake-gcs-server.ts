import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { faultName, FaultQueue, type Fault, type LoggedRequest, type RequestFilter, type RequestInfo } from './faults';
import { serveMedia } from './download';
import { readBody, Reply } from './http-util';
import { objectResource, ObjectStore, type FakeObject } from './object-store';
import { Uploads } from './uploads';

export type { Fault, LoggedRequest, RequestFilter, RequestInfo } from './faults';
export { on } from './faults';
export type { FakeObject } from './object-store';

export interface FakeGcsOptions {
  /** Listing page size when the client gives no maxResults (GCS uses 1000; keep it small to exercise paging). */
  pageSize?: number;
}

/**
 * An in-process fake of the GCS JSON API, enough for the real @google-cloud/storage client: multipart and
 * resumable uploads with ifGenerationMatch and server-side MD5/CRC32C validation, metadata, ranged media
 * downloads, listing with prefixes and pages, delete. Tests inject faults and inspect or tamper with objects.
 */
export class FakeGcsServer {
  private readonly store = new ObjectStore();
  private readonly faults = new FaultQueue();
  private readonly log: LoggedRequest[] = [];
  private readonly uploads: Uploads;
  private readonly pageSize: number;
  private readonly refusedClasses = new Map<string, Set<string>>();

  private constructor(
    private readonly server: Server,
    options: FakeGcsOptions,
  ) {
    this.pageSize = options.pageSize ?? 1000;
    this.uploads = new Uploads(
      this.store,
      () => this.url,
      (object) => this.resource(object),
      (bucket, storageClass) => this.storageClassProblem(bucket, storageClass),
    );
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res));
  }

  static async start(options: FakeGcsOptions = {}): Promise<FakeGcsServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new FakeGcsServer(server, options);
  }

  /** Base URL to give the client as apiEndpoint (or STORAGE_EMULATOR_HOST). */
  get url(): string {
    const address = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  /** The next `count` requests matching `filter` (all requests when omitted) suffer `fault`. */
  failNext(count: number, fault: Fault, filter?: RequestFilter): void {
    this.faults.add(count, fault, filter);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  /** Armed faults not yet consumed. */
  pendingFaults(): number {
    return this.faults.pending();
  }

  get requests(): readonly LoggedRequest[] {
    return this.log;
  }

  count(filter?: RequestFilter): number {
    return filter ? this.log.filter(filter).length : this.log.length;
  }

  resetLog(): void {
    this.log.length = 0;
  }

  getObject(bucket: string, name: string): FakeObject | undefined {
    return this.store.get(bucket, name);
  }

  /** Names of all objects in a bucket, sorted. */
  objectNames(bucket: string, prefix = ''): string[] {
    const names: string[] = [];
    let pageToken: string | undefined;
    do {
      const page = this.store.list(bucket, { prefix, pageToken, maxResults: 1000 });
      names.push(...page.items.map((o) => o.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);
    return names;
  }

  /** Stores an object directly (new generation, correct digests), bypassing HTTP and faults. */
  putObjectRaw(bucket: string, name: string, data: Buffer | string, contentType?: string): FakeObject {
    return this.store.put(bucket, name, Buffer.from(data), { contentType });
  }

  deleteObject(bucket: string, name: string): boolean {
    return this.store.delete(bucket, name);
  }

  /** Uploads to `bucket` asking for one of `classes` are refused with a 400, as a bucket whose policy disallows them. */
  refuseStorageClasses(bucket: string, classes: readonly string[]): void {
    this.refusedClasses.set(bucket, new Set(classes));
  }

  /** What a lifecycle SetStorageClass rule does: the class changes, the bytes, digests and generation do not. */
  setStorageClass(bucket: string, name: string, storageClass: string): void {
    const object = this.store.get(bucket, name);
    if (!object) throw new Error(`no object ${bucket}/${name} to change`);
    object.storageClass = storageClass;
  }

  /** Changes an object's bytes while keeping its recorded digests (default: flip the middle byte). */
  corrupt(bucket: string, name: string, mutate?: (data: Buffer) => Buffer): void {
    const object = this.store.get(bucket, name);
    if (!object) throw new Error(`no object ${bucket}/${name} to corrupt`);
    if (mutate) {
      object.data = mutate(Buffer.from(object.data));
      return;
    }
    const copy = Buffer.from(object.data);
    const i = Math.floor(copy.length / 2);
    copy[i] = (copy[i] ?? 0) ^ 0xff;
    object.data = copy;
  }

  /** Stops listening and cuts every open connection, including requests left hanging by 'timeout'. */
  async close(): Promise<void> {
    this.faults.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const info: RequestInfo = {
      method: req.method ?? 'GET',
      path: decodeURIComponent(url.pathname),
      query: Object.fromEntries(url.searchParams),
    };
    const entry: LoggedRequest = { ...info };
    this.log.push(entry);
    const fault = this.faults.take(info);
    if (fault) entry.fault = faultName(fault);
    const kind = fault && 'kind' in fault ? fault.kind : undefined;
    if (kind === 'drop') {
      req.socket.destroy();
      return;
    }
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch {
      return; // the client went away
    }
    if (kind === 'timeout') return; // never answer; close() cuts the connection
    const reply = new Reply(res, entry, kind === 'drop-after-commit');
    if (fault && 'status' in fault) return reply.error(fault.status, fault.message ?? 'Injected fault', 'backendError');
    try {
      this.route(req, url, info, body, reply, kind === 'tamper');
    } catch (error) {
      reply.error(500, `fake server failure: ${error instanceof Error ? error.message : String(error)}`, 'backendError');
    }
  }

  private route(req: IncomingMessage, url: URL, info: RequestInfo, body: Buffer, reply: Reply, tamper: boolean): void {
    // Split the raw path so that an encoded '/' in an object name stays part of the name.
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const query = info.query;
    const upload = after(segments, ['upload', 'storage', 'v1', 'b']);
    if (upload && upload.length === 2 && upload[0] && upload[1] === 'o') {
      const request = { req, bucket: upload[0], query, body, reply, tamper };
      if (req.method === 'POST' && query.uploadType === 'multipart') return this.uploads.multipart(request);
      if (req.method === 'POST' && query.uploadType === 'resumable') return this.uploads.startResumable(request);
      if (req.method === 'PUT' && query.upload_id) return this.uploads.resumableChunk(request);
    }
    const api = after(segments, ['storage', 'v1', 'b']);
    const bucket = api?.[0];
    if (api && bucket && api[1] === 'o') {
      const name = api.length > 2 ? api.slice(2).join('/') : undefined;
      if (name === undefined && req.method === 'GET') return this.list(bucket, query, reply);
      if (name !== undefined && req.method === 'GET' && query.alt === 'media') return this.download(req, bucket, name, reply);
      if (name !== undefined && req.method === 'GET') return this.metadata(bucket, name, reply);
      if (name !== undefined && req.method === 'DELETE') return this.remove(bucket, name, reply);
    }
    reply.error(404, `fake GCS has no route for ${info.method} ${info.path}`, 'notFound');
  }

  private list(bucket: string, query: Record<string, string>, reply: Reply): void {
    const maxResults = query.maxResults ? Number(query.maxResults) : this.pageSize;
    const page = this.store.list(bucket, {
      prefix: query.prefix ?? '',
      delimiter: query.delimiter,
      pageToken: query.pageToken,
      startOffset: query.startOffset,
      maxResults,
    });
    reply.json(200, {
      kind: 'storage#objects',
      ...(page.items.length > 0 ? { items: page.items.map((object) => this.resource(object)) } : {}),
      ...(page.prefixes.length > 0 ? { prefixes: page.prefixes } : {}),
      ...(page.nextPageToken !== undefined ? { nextPageToken: page.nextPageToken } : {}),
    });
  }

  private metadata(bucket: string, name: string, reply: Reply): void {
    const object = this.store.get(bucket, name);
    if (!object) return reply.error(404, `No such object: ${bucket}/${name}`, 'notFound');
    reply.json(200, this.resource(object));
  }

  private remove(bucket: string, name: string, reply: Reply): void {
    if (!this.store.delete(bucket, name)) return reply.error(404, `No such object: ${bucket}/${name}`, 'notFound');
    reply.send(204, {}, '');
  }

  private download(req: IncomingMessage, bucket: string, name: string, reply: Reply): void {
    const object = this.store.get(bucket, name);
    if (!object) return reply.error(404, `No such object: ${bucket}/${name}`, 'notFound');
    serveMedia(object, req.headers.range, reply);
  }

  private storageClassProblem(bucket: string, storageClass: string): string | undefined {
    if (!STORAGE_CLASSES.includes(storageClass)) return `Invalid argument: the storage class '${storageClass}' is not valid.`;
    if (this.refusedClasses.get(bucket)?.has(storageClass)) return `The storage class ${storageClass} is not allowed for objects in bucket ${bucket}.`;
    return undefined;
  }

  private resource(object: FakeObject): Record<string, unknown> {
    return objectResource(object, this.url);
  }
}

const STORAGE_CLASSES = ['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE', 'MULTI_REGIONAL', 'REGIONAL', 'DURABLE_REDUCED_AVAILABILITY'];

/** The rest of `segments` after `prefix`, or undefined when they do not start with it. */
function after(segments: string[], prefix: string[]): string[] | undefined {
  return prefix.every((p, i) => segments[i] === p) ? segments.slice(prefix.length) : undefined;
}
