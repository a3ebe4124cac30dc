import { PassThrough, type Readable } from 'node:stream';
import { isTransient } from './gcs-errors';
import { retryDelayMs, type RetryPolicy } from './gcs-retry';

export interface ByteRange {
  start: number;
  end?: number;
}

/**
 * A download stream that survives transient failures: after an error it asks again for the bytes not yet
 * delivered. Only whole-object downloads are checksummed by the client, so a resumed one is not; that is the
 * price of not starting over. `fail` turns the final error into what the caller should see.
 */
export function resumingReadStream(
  open: (range: ByteRange | undefined) => Readable,
  range: ByteRange | undefined,
  policy: RetryPolicy,
  fail: (error: unknown, attempts: number) => Error,
): Readable {
  const out = new PassThrough();
  let delivered = 0;
  let attempt = 0;
  let current: Readable | undefined;
  let timer: NodeJS.Timeout | undefined;

  const start = (): void => {
    attempt += 1;
    const from = (range?.start ?? 0) + delivered;
    if (range?.end !== undefined && from > range.end) {
      out.end(); // everything was delivered before the failure
      return;
    }
    const source = open(range === undefined && delivered === 0 ? undefined : { start: from, end: range?.end });
    current = source;
    source.on('data', (chunk: Buffer) => {
      delivered += chunk.length;
      if (!out.write(chunk)) {
        source.pause();
        out.once('drain', () => source.resume());
      }
    });
    source.on('end', () => out.end());
    source.on('error', (error: unknown) => {
      if (out.destroyed) return;
      if (attempt < policy.attempts && isTransient(error)) timer = setTimeout(start, retryDelayMs(policy, attempt));
      else out.destroy(fail(error, attempt));
    });
  };

  out.on('close', () => {
    clearTimeout(timer);
    current?.destroy();
  });
  start();
  return out;
}
