import type { Reply } from './http-util';
import type { FakeObject } from './object-store';

/** Media download (`alt=media`), whole or one `Range: bytes=a-b` / `bytes=a-` / `bytes=-n`, as GCS serves it. */
export function serveMedia(object: FakeObject, rangeHeader: string | undefined, reply: Reply): void {
  const size = object.data.length;
  const headers: Record<string, string> = {
    'content-type': object.contentType,
    'accept-ranges': 'bytes',
    // The client validates whole downloads against these (stored, not recomputed: corruption shows).
    'x-goog-hash': `crc32c=${object.crc32c},md5=${object.md5Hash}`,
    'x-goog-generation': String(object.generation),
    // Without 'identity' here the client skips its checksum validation.
    'x-goog-stored-content-encoding': 'identity',
    'x-goog-stored-content-length': String(size),
  };
  const range = /^bytes=(\d*)-(\d*)$/.exec(rangeHeader ?? '');
  if (!range || (range[1] === '' && range[2] === '')) return reply.send(200, headers, object.data);
  let start: number;
  let end: number;
  if (range[1] === '') {
    start = Math.max(0, size - Number(range[2]));
    end = size - 1;
  } else {
    start = Number(range[1]);
    end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
  }
  if (start >= size || end < start) {
    return reply.send(416, { 'content-range': `bytes */${size}`, 'content-type': 'text/plain' }, 'Requested range not satisfiable');
  }
  reply.send(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}` }, object.data.subarray(start, end + 1));
}
