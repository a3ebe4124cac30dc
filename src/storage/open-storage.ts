import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PitrError } from '../errors';
import { LocalStorage } from './local/local-storage';
import type { Storage } from './storage';

/** REPO is a directory path, a file:// URL, or gs://bucket/prefix. */
/** The GCS client is loaded only for gs:// repositories: it is large and slows every start. */
export interface OpenStorageOptions {
  gcsEndpoint?: string;
  /** Storage class of the objects written (gs:// only; the repository's storage-class setting). */
  storageClass?: string;
}

export async function openStorage(repo: string, options: OpenStorageOptions = {}): Promise<Storage> {
  if (repo.startsWith('gs://')) {
    const rest = repo.slice('gs://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash === -1 ? rest : rest.slice(0, slash);
    const prefix = slash === -1 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket))
      throw new PitrError('Usage', `invalid bucket name in repository ${repo}`, 'use gs://bucket/prefix with a valid bucket name');
    const { GcsStorage } = await import('./gcs/gcs-storage.js');
    return new GcsStorage({ bucket, prefix, apiEndpoint: options.gcsEndpoint, ...(options.storageClass ? { storageClass: options.storageClass } : {}) });
  }
  if (repo.startsWith('file://')) return new LocalStorage(fileURLToPath(repo));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo))
    throw new PitrError('Usage', `unsupported repository ${repo}`, 'use a directory path, file:///path or gs://bucket/prefix');
  return new LocalStorage(path.resolve(repo));
}
