import { decodeCheckedJson } from '../archive/checked-json';
import type { Repository } from '../archive/repository';
import { SEGMENTS_PREFIX, segmentDataName, segmentManifestName } from '../archive/segment-manifest';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE, backupPrefix, type BackupManifest } from '../archive/backup-manifest';
import { listBackups } from '../archive/backup-catalog';
import { parseLsn, type Lsn } from '../pg/lsn';
import { isoMicros } from '../pg/pg-time';
import { liveSegmentNames, segmentRangeOfName } from '../archive/segment-names';
import { trimIndex } from '../archive/index-trim';
import type { Logger } from '../logger';

export interface PruneOptions {
  /** Keep what is needed to restore to any point in [now - retention, now]. */
  retentionMs: number;
  /** Report what would be removed, remove nothing. */
  dryRun: boolean;
  /** "now"; the current time unless given (tests). */
  now?: Date;
  log?: Logger;
}

export interface PruneReport {
  repository: string;
  /** now - retention (ISO). */
  windowStart: string;
  /** The oldest backup kept: restores to any point from the window's start on start from it or a newer one. Null without backups. */
  keptFrom: { backup: string; alignedLsn: string; endTime: string } | null;
  removed: {
    /** Complete backups removed (ids, oldest first). */
    backups: string[];
    /** Incomplete (dead) backup folders removed. */
    incompleteBackups: string[];
    /** Segments removed (manifest and data). */
    segments: number;
    /** Segment data objects without a manifest (interrupted uploads) removed. */
    orphanSegmentData: number;
    /** Stored bytes of everything removed. */
    bytes: number;
  };
  dryRun: boolean;
}

interface Removal {
  /** Objects in removal order. */
  objects: string[];
  bytes: number;
}

const compareLsn = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);

/** `segments/<HI>/<FIRST>-<END>.lz4` (or `.json`) → END, or undefined for a name not of that form. */
const endLsnOfName = (name: string): Lsn | undefined => segmentRangeOfName(name)?.end;

/**
 * Removes what is no longer needed to restore to any point of the window [now - retention, now].
 *
 * Kept: the newest complete backup that ended before the window's start (the oldest backup when none
 * did, so the only backup is never removed), every newer backup, and every segment ending after that
 * backup's aligned LSN, plus the one segment just before them so the kept chain still starts from a
 * segment whose link verify and restore can check. Everything strictly older goes: older backups
 * (manifest first, so a half-removed backup is incomplete rather than corrupt; the started marker last),
 * older segments (manifest first, then data), and dead incomplete backups older than the kept one.
 *
 * Safe beside a running archiver: it only appends segments after the newest, which is never removed.
 */
export async function pruneRepository(repo: Repository, options: PruneOptions): Promise<PruneReport> {
  const now = options.now ?? new Date();
  const windowStart = new Date(now.getTime() - options.retentionMs);
  const report: PruneReport = {
    repository: repo.storage.location,
    windowStart: isoMicros(windowStart.toISOString()),
    keptFrom: null,
    removed: { backups: [], incompleteBackups: [], segments: 0, orphanSegmentData: 0, bytes: 0 },
    dryRun: options.dryRun,
  };

  const backups = await listBackups(repo);
  backups.sort((a, b) => compareLsn(parseLsn(a.alignedLsn), parseLsn(b.alignedLsn)) || a.id.localeCompare(b.id));
  // Without a backup nothing can be restored from the segments yet: keep them all.
  if (backups.length === 0) return report;

  const older = backups.filter((b) => Date.parse(b.endTime) <= windowStart.getTime());
  const kept = (older[older.length - 1] ?? backups[0]) as BackupManifest;
  const keptIndex = backups.indexOf(kept);
  const aligned = parseLsn(kept.alignedLsn);
  report.keptFrom = { backup: kept.id, alignedLsn: kept.alignedLsn, endTime: isoMicros(kept.endTime) };

  const removals: Removal[] = [];

  // Complete backups older than the kept one.
  for (const backup of backups.slice(0, keptIndex)) {
    const removal = await backupRemoval(repo, backupPrefix(backup.id), true);
    if (removal.objects.length === 0) continue;
    removals.push(removal);
    report.removed.backups.push(backup.id);
  }

  // Incomplete backups older than the kept one that are dead: no started marker (pieces left behind),
  // or one older than the window's start (no backup runs that long beside a newer complete one).
  const { prefixes } = await repo.storage.list(BACKUPS_PREFIX, { delimiter: '/' });
  const complete = new Set(backups.map((b) => backupPrefix(b.id)));
  for (const prefix of prefixes) {
    if (complete.has(prefix) || prefix >= backupPrefix(kept.id)) continue;
    if (await repo.storage.stat(`${prefix}${MANIFEST_FILE}`)) continue; // completed since we listed
    if (!(await startedLongAgo(repo, prefix, windowStart))) continue;
    const removal = await backupRemoval(repo, prefix, false);
    if (removal.objects.length === 0) continue;
    removals.push(removal);
    report.removed.incompleteBackups.push(prefix.slice(BACKUPS_PREFIX.length, -1));
  }

  // Segments ending at or before the kept backup's aligned LSN, but the last of them (the chain's anchor).
  // Their names say where they end: no manifest needs reading.
  const { objects } = await repo.storage.list(SEGMENTS_PREFIX);
  const sizes = new Map(objects.map((o) => [o.name, o.size]));
  const manifestNames = objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
  const live = liveSegmentNames(manifestNames);
  const newest = live[live.length - 1];
  const before = live.filter((n) => n !== newest && (endLsnOfName(n) ?? aligned + 1n) <= aligned);
  const anchor = before.pop();
  const anchorFirst = anchor === undefined ? undefined : segmentRangeOfName(anchor)?.first;
  // sources of a compacted segment left by an interrupted "pitr compact", wholly before the anchor: old history too
  const liveSet = new Set(live);
  const superseded = manifestNames.filter((n) => !liveSet.has(n) && anchorFirst !== undefined && (endLsnOfName(n) ?? anchorFirst) < anchorFirst);
  for (const manifestName of [...before, ...superseded]) {
    const base = manifestName.slice(0, -'.json'.length);
    const names = [segmentManifestName(base), segmentDataName(base)].filter((n) => sizes.has(n));
    removals.push({ objects: names, bytes: names.reduce((sum, n) => sum + (sizes.get(n) ?? 0), 0) });
    report.removed.segments++;
  }
  // Data objects of interrupted uploads older than the anchor: never part of the archive.
  if (anchor) {
    const manifests = new Set(manifestNames);
    for (const object of objects) {
      if (!object.name.endsWith('.lz4') || object.name >= anchor) continue;
      if (manifests.has(`${object.name.slice(0, -'.lz4'.length)}.json`)) continue;
      const end = endLsnOfName(object.name);
      if (end === undefined || end > aligned) continue;
      removals.push({ objects: [object.name], bytes: object.size });
      report.removed.orphanSegmentData++;
    }
  }

  // The index stops naming the segments before the anchor before they go (index-trim.ts).
  const identity = anchorFirst !== undefined && report.removed.segments > 0 && !options.dryRun ? await repo.identity() : null;
  if (identity && anchorFirst !== undefined) await trimIndex(repo, identity, anchorFirst, options.log);

  for (const removal of removals) {
    report.removed.bytes += removal.bytes;
    if (options.dryRun) continue;
    for (const name of removal.objects) await repo.storage.remove(name);
  }
  options.log?.info(
    { event: 'pruned', dryRun: options.dryRun, keptFrom: kept.id, removed: report.removed },
    `${options.dryRun ? 'would remove' : 'removed'} ${report.removed.backups.length} backups and ${report.removed.segments} segments older than backup ${kept.id}`,
  );
  return report;
}

/** The objects of a backup folder in a safe removal order: manifest first, started marker last. */
async function backupRemoval(repo: Repository, prefix: string, complete: boolean): Promise<Removal> {
  const { objects } = await repo.storage.list(prefix);
  const manifest = `${prefix}${MANIFEST_FILE}`;
  const started = `${prefix}${STARTED_FILE}`;
  const rank = (name: string): number => (name === manifest ? 0 : name === started ? 2 : 1);
  const ordered = [...objects].sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : 1));
  if (complete && !ordered.some((o) => o.name === manifest)) return { objects: [], bytes: 0 };
  return { objects: ordered.map((o) => o.name), bytes: ordered.reduce((sum, o) => sum + o.size, 0) };
}

/** True when an incomplete backup has no readable started marker, or one older than `before`. */
async function startedLongAgo(repo: Repository, prefix: string, before: Date): Promise<boolean> {
  const name = `${prefix}${STARTED_FILE}`;
  if (!(await repo.storage.stat(name))) return true;
  try {
    const started = decodeCheckedJson<{ startedAt?: string }>(await repo.storage.read(name), name);
    const at = started.startedAt === undefined ? NaN : Date.parse(started.startedAt);
    return Number.isNaN(at) || at < before.getTime();
  } catch {
    return true;
  }
}
