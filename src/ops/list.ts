import type { Repository } from '../archive/repository';
import type { RepositorySet } from '../archive/repository-set';
import type { SegmentManifest } from '../archive/segment-manifest';
import { listBackups } from '../archive/backup-catalog';
import { parseLsn } from '../pg/lsn';
import { isoMicros } from '../pg/pg-time';
import type { ArchiveGap } from '../archive/archive-gaps';
import { recoverableWindow, toPoint, type Point } from '../archive/recoverable-window';
import { ArchiveView, type SegmentSelection } from '../archive/archive-view';

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

/** One repository of those `list` was given: where it is, its storage class, and (with several) what it holds. */
export interface RepositorySummary {
  name: string;
  location: string;
  /** The storage-class setting given for it; null when none was. */
  storageClass: string | null;
  /** With several repositories: how many objects it holds and their total size. */
  objects?: number;
  bytes?: number;
  objectsRead: number;
}

/** The repositories of the set, each with its size when there are several (a listing of each). */
export async function summarizeRepositories(set: RepositorySet): Promise<RepositorySummary[]> {
  const read = new Map(set.usage().map((u) => [u.name, u.objectsRead]));
  const several = set.members.length > 1;
  const summaries: RepositorySummary[] = [];
  for (const member of set.members) {
    const summary: RepositorySummary = {
      name: member.name,
      location: member.storage.location,
      storageClass: member.storageClass ?? null,
      objectsRead: read.get(member.name) ?? 0,
    };
    if (several) {
      const listed = await member.storage.list('').catch(() => null);
      if (listed) {
        summary.objects = listed.objects.length;
        summary.bytes = listed.objects.reduce((n, o) => n + o.size, 0);
      }
    }
    summaries.push(summary);
  }
  return summaries;
}

/** Segment manifests in LSN order (through the index; `select` keeps only the pages that may hold what is wanted). */
export async function readSegmentManifests(repo: Repository, select: SegmentSelection = {}): Promise<SegmentManifest[]> {
  return (await ArchiveView.open(repo)).segments(select);
}

/** What the repository holds: backups, the segment chain, its gaps and marks, and the recoverable window. */
export async function listRepository(repo: Repository): Promise<ListReport> {
  const manifests = await listBackups(repo);
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
  const view = await ArchiveView.open(repo);
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
