import type { File } from '@google-cloud/storage';
import type { ObjectInfo } from '../storage';
import { statusOf } from './gcs-errors';

export type ObjectMetadata = File['metadata'];

/** The object's metadata, or null when it does not exist. One request, not retried here. */
export async function fetchMetadata(file: File): Promise<ObjectMetadata | null> {
  try {
    const [metadata] = await file.getMetadata();
    return metadata;
  } catch (error) {
    if (statusOf(error) === 404) return null;
    throw error;
  }
}

export function objectInfo(name: string, metadata: ObjectMetadata): ObjectInfo {
  const written = metadata.updated ?? metadata.timeCreated;
  return {
    name,
    size: Number(metadata.size),
    ...(metadata.md5Hash ? { md5: metadata.md5Hash } : {}),
    ...(written ? { modifiedAt: new Date(written) } : {}),
    ...(typeof metadata.storageClass === 'string' && metadata.storageClass ? { storageClass: metadata.storageClass } : {}),
  };
}
