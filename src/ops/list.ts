import type { RepositorySet } from '../archive/repository-set';
import type { SegmentManifest } from '../archive/segment-manifest';
import { listBackups } from '../archive/backup-catalog';
import { parseLsn } from '../pg/lsn';
import { isoMicros } from '../pg/pg-time';
import type { ArchiveGap } from '../archive/archive-gaps';
import { recoverableWindow, toPoint, type Point } from '../archive/recoverable-window';
import { ArchiveView, type SegmentSelection } from '../archive/archive-view';
import type { BackupManifest } from '../archive/backup-manifest';
import { mapBounded } from '../archive/bounded-map';
import { IDENTITY_OBJECT, Repository } from '../archive/repository';
import { messageOf } from '../errors';
import { archiveSize, listedSize, type RepositorySize } from './repository-size';

export type { Point } from '../archive/recoverable-window';
export type { ArchiveGap } from '../archive/archive-gaps';

export interface BackupSummary {
  id: string;
  alignedLsn: string;
  startTime: string;
  endTime: string;
  /** From startTime to endTime. */
  seconds: number;
  storedBytes: number;
  tables: number;
  rows: number;
}

export interface ListReport {
  repository: string;
  backups: BackupSummary[];
  segments: { count: number; first: Point | null; last: Point | null };
  /** Stretches of history missing from the archive, both bounds in LSN and time (archive-gaps.ts). */
  gaps: ArchiveGap[];
  marks: { name: string; segment: string }[];
  /** The restorable range that reaches the archive's end; earliest is null when no backup can be replayed to it. */
  window: { earliest: Point | null; latest: Point | null };
  /** Every restorable range, oldest first: with gaps, the ranges before them stay restorable from older backups. */
  ranges: { earliest: Point; latest: Point; backup: string }[];
}

/** One repository of those `list` was given: where it is, its storage class, and what its archive takes up. */
export interface RepositorySummary {
  name: string;
  location: string;
  /** Its storage-class setting; without one, the class its objects report (GCS); null when neither says (a local directory: "default"). */
  storageClass: string | null;
  /** Where storageClass comes from. */
  storageClassFrom: 'setting' | 'objects' | null;
  /** Segment data and backup objects of its own archive and their total size (repository-size.ts); absent when it could not be read. */
  objects?: number;
  bytes?: number;
  /** 'index' (the catalog and the tail after it), 'manifests' (every segment manifest read: no index yet) or 'listing' (see sizeProblem). */
  sizeFrom?: RepositorySize['source'];
  /** Why the repository's own index or manifests could not give its size (then it was listed), or why it is absent. */
  sizeProblem?: string;
  objectsRead: number;
}

/** What `listRepository` opened, for `summarizeRepositories` to reuse when there is one repository. */
export interface OpenedArchive {
  view: ArchiveView;
  backups: BackupManifest[];
}

export async function openArchive(repo: Repository): Promise<OpenedArchive> {
  const [view, backups] = await Promise.all([ArchiveView.open(repo), listBackups(repo)]);
  return { view, backups };
}

/**
 * The repositories of the set, each with its storage class and size. With one, the size comes from what
 * the listing opened; with several, each repository's own index and backup manifests are read (a few
 * objects each, whatever the archive's age), as each copy may hold more or less than the others.
 */
export async function summarizeRepositories(set: RepositorySet, opened?: OpenedArchive): Promise<RepositorySummary[]> {
  const read = new Map(set.usage().map((u) => [u.name, u.objectsRead]));
  const single = set.members.length === 1;
  return mapBounded(set.members, async (member) => {
    const reported = member.storageClass ? undefined : await member.storage.stat(IDENTITY_OBJECT).catch(() => null);
    const storageClass = member.storageClass ?? reported?.storageClass ?? null;
    const summary: RepositorySummary = {
      name: member.name,
      location: member.storage.location,
      storageClass,
      storageClassFrom: member.storageClass ? 'setting' : storageClass ? 'objects' : null,
      objectsRead: read.get(member.name) ?? 0,
    };
    try {
      let size: RepositorySize;
      try {
        const own = single && opened ? opened : await openArchive(new Repository(member.storage));
        size = archiveSize(own.view, own.backups);
      } catch (error) {
        // a damaged copy: its own index or manifests cannot be read, its objects can be listed
        summary.sizeProblem = messageOf(error);
        size = await listedSize(member.storage);
      }
      summary.objects = size.objects;
      summary.bytes = size.bytes;
      summary.sizeFrom = size.source;
    } catch (error) {
      summary.sizeProblem = messageOf(error);
    }
    return summary;
  });
}

/** Segment manifests in LSN order (through the index; `select` keeps only the pages that may hold what is wanted). */
export async function readSegmentManifests(repo: Repository, select: SegmentSelection = {}): Promise<SegmentManifest[]> {
  return (await ArchiveView.open(repo)).segments(select);
}

/** What the repository holds: backups, the segment chain, its gaps and marks, and the recoverable window. */
export async function listRepository(repo: Repository, opened?: OpenedArchive): Promise<ListReport> {
  const { view, backups: stored } = opened ?? (await openArchive(repo));
  const manifests = [...stored];
  manifests.sort((a, b) => {
    const d = parseLsn(a.alignedLsn) - parseLsn(b.alignedLsn);
    return d < 0n ? -1 : d > 0n ? 1 : a.id.localeCompare(b.id);
  });
  const backups: BackupSummary[] = manifests.map((m) => ({
    id: m.id,
    alignedLsn: m.alignedLsn,
    startTime: isoMicros(m.startTime),
    endTime: isoMicros(m.endTime),
    seconds: (Date.parse(m.endTime) - Date.parse(m.startTime)) / 1000,
    storedBytes: m.totals.storedBytes,
    tables: m.totals.tables,
    rows: m.totals.rows,
  }));
  // the index: summaries of its pages, the tail after them, and only the pages a backup's bound needs
  const first = view.first;
  const last = view.newest;
  const window = await recoverableWindow(repo, { backups: manifests, view });
  return {
    repository: repo.storage.location,
    backups,
    segments: {
      count: view.count,
      first: first ? { lsn: first.firstCommitLsn, time: first.firstCommitTime } : null,
      last: last ? { lsn: last.lastCommitLsn, time: last.lastCommitTime } : null,
    },
    gaps: window.gaps,
    marks: view.marks,
    window: { earliest: window.earliest && toPoint(window.earliest), latest: window.latest && toPoint(window.latest) },
    ranges: window.ranges.map((r) => ({ earliest: toPoint(r.earliest), latest: toPoint(r.latest), backup: r.backup })),
  };
}
