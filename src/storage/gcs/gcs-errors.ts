import { PitrError } from '../../errors';

/**
 * Classifying and describing the errors the GCS client produces. They come in several shapes: ApiError
 * (JSON API, `code` = HTTP status), GaxiosError (resumable uploads, `status`), plain `{ code, message }`
 * objects (resumable upload failures), and node-fetch FetchErrors (network, `code` = errno, `type`).
 */

/** Thrown by `retry` when a transient failure outlasted every attempt. */
export class GaveUp extends Error {
  constructor(
    readonly last: unknown,
    readonly attempts: number,
  ) {
    super(`gave up after ${attempts} attempts`);
  }
}

const TRANSIENT_ERRNOS = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

/** HTTP status of a failed request, when there was an answer. */
export function statusOf(error: unknown): number | undefined {
  for (const candidate of [field(error, 'code'), field(error, 'status'), field(field(error, 'response'), 'status')]) {
    if (typeof candidate === 'number' && candidate >= 100 && candidate < 600) return candidate;
    if (typeof candidate === 'string' && /^[1-5]\d\d$/.test(candidate)) return Number(candidate);
  }
  return undefined;
}

/** The server refused the upload because the bytes did not match the digest we declared. */
export function isDigestMismatch(error: unknown): boolean {
  return statusOf(error) === 400 && /md5|crc32c|checksum|hash/i.test(rawMessage(error));
}

/** Worth another attempt: server overload or outage, throttling, timeouts, broken connections. */
export function isTransient(error: unknown): boolean {
  if (error instanceof PitrError) return false; // already decided, and its message must not be pattern-matched
  const status = statusOf(error);
  if (status !== undefined) return status === 408 || status === 429 || status >= 500 || isDigestMismatch(error);
  const code = field(error, 'code');
  if (typeof code === 'string' && TRANSIENT_ERRNOS.has(code)) return true;
  const type = field(error, 'type'); // node-fetch FetchError: 'request-timeout', 'body-timeout', 'system'
  if (type === 'request-timeout' || type === 'body-timeout' || type === 'system') return true;
  return /socket hang up|network timeout|timed? ?out|premature close|ECONNRESET|aborted/i.test(rawMessage(error));
}

/** The server refused the storage class asked for (GCS answers 400 naming it). */
export function isStorageClassRefused(error: unknown): boolean {
  return statusOf(error) === 400 && /storage ?class/i.test(serverMessage(error));
}

/**
 * The server's own explanation: `describe`, or, for a resumable upload's GaxiosError (whose message is
 * only "Request failed with status code N"), the message in the JSON body it answered with.
 */
export function serverMessage(error: unknown): string {
  const inner = field(field(field(field(error, 'response'), 'data'), 'error'), 'message');
  return typeof inner === 'string' ? describe({ message: inner }) : describe(error);
}

/** A 404 about the bucket rather than the object (GCS: "The specified bucket does not exist."). */
export function isBucketMissing(error: unknown): boolean {
  return statusOf(error) === 404 && /bucket does not exist/i.test(describe(error));
}

/** The client found a whole download not matching the checksum the server recorded. */
export function isDownloadMismatch(error: unknown): boolean {
  return field(error, 'code') === 'CONTENT_DOWNLOAD_MISMATCH';
}

function rawMessage(error: unknown): string {
  const message = field(error, 'message');
  if (typeof message === 'string') return message;
  return typeof error === 'string' ? error : '';
}

/**
 * A one-line description fit for logs: the server's own message where there is one, with anything that can
 * act as a credential removed (upload session URIs, signatures, tokens).
 */
export function describe(error: unknown): string {
  let text = rawMessage(error);
  // Download errors carry the raw JSON body as their message.
  if (text.startsWith('{')) {
    try {
      const inner = field(field(JSON.parse(text), 'error'), 'message');
      if (typeof inner === 'string') text = inner;
    } catch {
      // not JSON after all; keep the text
    }
  }
  const status = statusOf(error);
  if (!text) text = status !== undefined ? `HTTP ${status}` : String(field(error, 'code') ?? 'unknown error');
  else if (status !== undefined && !text.includes(String(status))) text = `${text} (HTTP ${status})`;
  const clean = text
    .replace(/(https?:\/\/[^\s"'?]+)\?[^\s"']*/g, '$1')
    .replace(/(https?:\/\/)[^\s"'/@]+@/g, '$1')
    .replace(/\b(Bearer|Basic)\s+[^\s"']+/gi, '$1 [redacted]')
    .replace(/\b(access_token|upload_id|key|token|X-Goog-Signature|X-Goog-Credential)=[^&\s"']+/gi, '$1=[redacted]')
    .replace(/\s+/g, ' ')
    .trim();
  return clean.length > 300 ? `${clean.slice(0, 300)}…` : clean;
}

const AUTH_HINT =
  'set up Application Default Credentials (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS pointing to a service account key), or run on a machine with an attached service account';

/**
 * Turns a failure of `what` (e.g. "upload of wal/0001") against `location` into a PitrError. Never attaches
 * the original error as cause: client errors hold request configs, which can include authorization headers.
 */
export function toPitrError(error: unknown, what: string, location: string): PitrError {
  if (error instanceof PitrError) return error;
  if (error instanceof GaveUp) {
    if (isDigestMismatch(error.last)) {
      return new PitrError(
        'Integrity',
        `${what} in ${location} was rejected ${error.attempts} times: the bytes sent do not match their MD5 (${describe(error.last)})`,
        'nothing was stored; the local file probably changed while it was being uploaded',
      );
    }
    return new PitrError(
      'Connection',
      `${what} in ${location} failed after ${error.attempts} attempts: ${describe(error.last)}`,
      'Cloud Storage is unreachable or overloaded; check network access to storage.googleapis.com (or the configured endpoint) and retry',
    );
  }
  const status = statusOf(error);
  const detail = describe(error);
  if (/could not load the default credentials|invalid_grant|unable to detect a project id/i.test(detail) || status === 401) {
    return new PitrError('Connection', `${what} in ${location} failed: cannot authenticate to Cloud Storage (${detail})`, AUTH_HINT);
  }
  if (status === 403) {
    return new PitrError(
      'Repository',
      `${what} in ${location} failed: permission denied (${detail})`,
      'grant the account pitr runs as the Storage Object Admin role (roles/storage.objectAdmin) on the bucket',
    );
  }
  if (isBucketMissing(error)) {
    return new PitrError('Repository', `${what} failed: bucket of ${location} does not exist (${detail})`, 'create the bucket, or fix the repository URL');
  }
  if (isTransient(error)) {
    return new PitrError('Connection', `${what} in ${location} failed: ${detail}`, 'check network access to Cloud Storage and retry');
  }
  return new PitrError('Repository', `${what} in ${location} failed: ${detail}`);
}
