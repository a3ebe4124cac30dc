import { Storage, type Bucket } from '@google-cloud/storage';

type RequestOptions = ReturnType<Storage['interceptors'][number]['request']>;

export interface ClientOptions {
  bucket: string;
  /** e.g. http://127.0.0.1:4443 for an emulator; falls back to STORAGE_EMULATOR_HOST. */
  apiEndpoint?: string;
  projectId?: string;
  /** Per HTTP request, including each resumable upload chunk. */
  timeoutMs: number;
}

/**
 * A client for one bucket, configured for predictable behaviour: the library's own retries are off (the
 * driver retries, with its own policy and idempotency reasoning), and every request has a timeout.
 */
export function openBucket(options: ClientOptions): Bucket {
  const endpoint = (options.apiEndpoint || process.env.STORAGE_EMULATOR_HOST || '').replace(/\/+$/, '').replace(/\/storage\/v1$/, '');
  const storage = new Storage({
    ...(endpoint
      ? {
          apiEndpoint: endpoint,
          // An emulator has no use for credentials (and a test machine has none); a private Google endpoint does.
          useAuthWithCustomEndpoint: isGoogleHost(endpoint),
        }
      : {}),
    ...(options.projectId ? { projectId: options.projectId } : {}),
    timeout: options.timeoutMs,
    // autoRetry false is what disables retries; maxRetries 0 would be ignored (0 is falsy, the default 3 wins).
    retryOptions: { autoRetry: false, retryableErrorFn: () => false },
  });
  if (endpoint) {
    // With STORAGE_EMULATOR_HOST set the library uses that value verbatim as the JSON API base, without
    // /storage/v1, even when an explicit apiEndpoint is given; uploads do append their path. Make both agree.
    storage.baseUrl = `${storage.apiEndpoint}/storage/v1`;
  }
  // Resumable uploads go through gaxios, which only gets per-request options from interceptors. (The
  // interceptor's declared types promise a `uri` that resumable uploads do not pass, hence the cast.)
  storage.interceptors.push({ request: (opts) => ({ ...opts, timeout: options.timeoutMs }) as RequestOptions });
  return storage.bucket(options.bucket);
}

function isGoogleHost(endpoint: string): boolean {
  try {
    const host = new URL(/^\w+:\/\//.test(endpoint) ? endpoint : `https://${endpoint}`).hostname;
    return host === 'googleapis.com' || host.endsWith('.googleapis.com');
  } catch {
    return false;
  }
}
