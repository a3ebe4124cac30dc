import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LoggedRequest } from './faults';

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    // A client that goes away mid-body must not be taken as a complete (shorter) body.
    req.on('aborted', () => reject(new Error('request aborted')));
  });
}

/** The one way handlers answer, so that a 'drop-after-commit' fault can swallow any answer. */
export class Reply {
  constructor(
    private readonly res: ServerResponse,
    private readonly log: LoggedRequest,
    private readonly dropInstead: boolean,
  ) {}

  send(status: number, headers: Record<string, string>, body: Buffer | string): void {
    if (this.dropInstead) {
      this.res.socket?.destroy();
      return;
    }
    this.log.status = status;
    this.res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers });
    this.res.end(body);
  }

  /** The client library only parses bodies typed exactly application/json or application/json; charset=utf-8. */
  json(status: number, value: unknown, headers: Record<string, string> = {}): void {
    this.send(status, { 'content-type': 'application/json; charset=utf-8', ...headers }, JSON.stringify(value));
  }

  error(status: number, message: string, reason = 'invalid'): void {
    this.json(status, { error: { code: status, message, errors: [{ domain: 'global', reason, message }] } });
  }
}

export interface MultipartPart {
  headers: Record<string, string>;
  body: Buffer;
}

/** Parses a multipart/related body (metadata part, then media part) as the client library sends it. */
export function parseMultipart(body: Buffer, contentType: string): MultipartPart[] {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) throw new Error('multipart body without boundary');
  const delimiter = Buffer.from(`--${boundary}`);
  const closing = Buffer.from(`\r\n--${boundary}`);
  const parts: MultipartPart[] = [];
  let pos = body.indexOf(delimiter);
  while (pos >= 0) {
    const start = pos + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', start);
    if (headerEnd < 0) throw new Error('multipart part without header end');
    const end = body.indexOf(closing, headerEnd + 4);
    if (end < 0) throw new Error('multipart part without closing boundary');
    const headers: Record<string, string> = {};
    for (const line of body.subarray(start, headerEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    parts.push({ headers, body: body.subarray(headerEnd + 4, end) });
    pos = end + 2;
  }
  return parts;
}
