import type { ArchiveView } from '../archive/archive-view';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE } from '../archive/backup-manifest';
import { SEGMENTS_PREFIX } from '../archive/segment-manifest';
import { liveSegmentNames } from '../archive/segment-names';
import type { Storage } from '../storage/storage';
import type { BackupManifest } from '../archive/backup-manifest';

/**
 * What a repository's archive takes up: its segment data objects and its backups' objects, in bytes and
 * objects, as the index and the backup manifests record them. Not a listing of the repository: its cost
 * is the catalog, the tail after it and one manifest per backup, whatever the archive's age. Manifests,
 * index pages and the small records (repository.json, slot records, leases) are not counted; they are a
 * few kilobytes each.
 */
export interface RepositorySize {
  bytes: number;
  objects: number;
  segments: { bytes: number; objects: number };
  backups: { bytes: number; objects: number };
  /**
   * 'index' when the segment figures come from the index catalog (and the tail after it), 'manifests' when
   * every segment manifest was read (no index yet), 'listing' when the repository's own index or manifests
   * could not be read (a damaged copy) and its objects were listed instead.
   */
  source: 'index' | 'manifests' | 'listing';
}

/** The size, from a view of the archive and its backups' manifests (no further reads). */
export function archiveSize(view: ArchiveView, backups: readonly BackupManifest[]): RepositorySize {
  const segments = { bytes: 0, objects: 0 };
  for (const s of view.summaries) {
    segments.bytes += s.storedBytes;
    segments.objects += s.segments;
  }
  const stored = { bytes: 0, objects: 0 };
  for (const b of backups) {
    const { preData, postData, dump } = b.schema;
    for (const part of [preData, postData, dump, ...b.tables.flatMap((t) => t.chunks)]) {
      stored.bytes += part.storedBytes;
      stored.objects += 1;
    }
  }
  return {
    bytes: segments.bytes + stored.bytes,
    objects: segments.objects + stored.objects,
    segments,
    backups: stored,
    source: view.source.kind === 'index' ? 'index' : 'manifests',
  };
}

/**
 * The same figures from a listing of the objects the repository holds: what a copy whose own index or
 * manifests are damaged is measured by. Its cost grows with the archive; only for that case.
 */
export async function listedSize(storage: Storage): Promise<RepositorySize> {
  const [segmentObjects, backupObjects] = await Promise.all([storage.list(SEGMENTS_PREFIX), storage.list(BACKUPS_PREFIX)]);
  const sizes = new Map(segmentObjects.objects.map((o) => [o.name, o.size]));
  const segments = { bytes: 0, objects: 0 };
  for (const name of liveSegmentNames(segmentObjects.objects.map((o) => o.name).filter((n) => n.endsWith('.lz4')))) {
    segments.bytes += sizes.get(name) ?? 0;
    segments.objects += 1;
  }
  const complete = new Set(backupObjects.objects.filter((o) => o.name.endsWith(`/${MANIFEST_FILE}`)).map((o) => o.name.slice(0, -MANIFEST_FILE.length)));
  const backups = { bytes: 0, objects: 0 };
  for (const o of backupObjects.objects) {
    const slash = o.name.indexOf('/', BACKUPS_PREFIX.length);
    const dir = o.name.slice(0, slash + 1);
    const part = o.name.slice(slash + 1);
    if (slash === -1 || !complete.has(dir) || part === MANIFEST_FILE || part === STARTED_FILE) continue;
    backups.bytes += o.size;
    backups.objects += 1;
  }
  return { bytes: segments.bytes + backups.bytes, objects: segments.objects + backups.objects, segments, backups, source: 'listing' };
}
