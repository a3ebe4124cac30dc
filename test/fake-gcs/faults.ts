/** Fault injection for the fake GCS server: what can go wrong with one request, and which requests it hits. */

export type Fault =
  /** Answer with this HTTP status (and a GCS-style error body) instead of serving the request. */
  | { status: number; message?: string }
  /** Read the request, never answer: the client must time out. */
  | { kind: 'timeout' }
  /** Destroy the connection as soon as the request arrives. */
  | { kind: 'drop' }
  /** Serve the request (commit uploads, deletes...) but destroy the connection instead of answering. */
  | { kind: 'drop-after-commit' }
  /** Flip one byte of the uploaded payload before the server validates it, like corruption in transit. */
  | { kind: 'tamper' };

/** What a fault filter and the request log see of a request. */
export interface RequestInfo {
  method: string;
  /** Decoded path, e.g. /storage/v1/b/bucket/o/a/b or /upload/storage/v1/b/bucket/o. */
  path: string;
  query: Record<string, string>;
}

export interface LoggedRequest extends RequestInfo {
  /** Fault applied to this request, if any. */
  fault?: string;
  /** Status answered (absent when the request hung or was dropped). */
  status?: number;
}

export type RequestFilter = (request: RequestInfo) => boolean;

interface Armed {
  remaining: number;
  fault: Fault;
  filter: RequestFilter | undefined;
}

export function faultName(fault: Fault): string {
  return 'status' in fault ? `status ${fault.status}` : fault.kind;
}

/** Armed faults, consumed in the order they were armed by the first requests they match. */
export class FaultQueue {
  private armed: Armed[] = [];

  add(count: number, fault: Fault, filter?: RequestFilter): void {
    if (count > 0) this.armed.push({ remaining: count, fault, filter });
  }

  take(request: RequestInfo): Fault | undefined {
    const entry = this.armed.find((a) => a.filter === undefined || a.filter(request));
    if (!entry) return undefined;
    entry.remaining -= 1;
    if (entry.remaining === 0) this.armed = this.armed.filter((a) => a !== entry);
    return entry.fault;
  }

  pending(): number {
    return this.armed.reduce((sum, a) => sum + a.remaining, 0);
  }

  clear(): void {
    this.armed = [];
  }
}

/** Common filters. */
export const on = {
  uploads: (r: RequestInfo): boolean => r.path.startsWith('/upload/'),
  /** Session starts and chunk PUTs of resumable uploads. */
  resumable: (r: RequestInfo): boolean => r.path.startsWith('/upload/') && r.query.uploadType === 'resumable',
  resumableChunks: (r: RequestInfo): boolean => r.method === 'PUT' && r.path.startsWith('/upload/'),
  multipart: (r: RequestInfo): boolean => r.path.startsWith('/upload/') && r.query.uploadType === 'multipart',
  downloads: (r: RequestInfo): boolean => r.method === 'GET' && r.query.alt === 'media',
  metadata: (r: RequestInfo): boolean => r.method === 'GET' && /\/o\/.+/.test(r.path) && r.query.alt !== 'media',
  lists: (r: RequestInfo): boolean => r.method === 'GET' && /\/o$/.test(r.path),
  deletes: (r: RequestInfo): boolean => r.method === 'DELETE',
  method:
    (method: string) =>
    (r: RequestInfo): boolean =>
      r.method === method,
};
