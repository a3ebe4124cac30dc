import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';
import { listBackups } from '../backup/catalog';
import { parseLsn } from '../capture/lsn';
import { recoverableWindow, toPoint, type Point } from './recoverable-window';

export type { Point } from './recoverable-window';

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

/** Two consecutive segments whose chain link is broken: transactions between them may be missing. */
export interface ChainGap {
  /** The segment before the gap (its end LSN) and the one after it (its first commit LSN). */
  after: string;
  before: string;
  fromLsn: string;
  toLsn: string;
}

export interface ListReport {
  repository: string;
  backups: BackupSummary[];
  segments: { count: number; first: Point | null; last: Point | null };
  gaps: ChainGap[];
  marks: { name: string; segment: string }[];
  window: { earliest: Point | null; latest: Point | null };
}

/** True when `segment` names `previous` (name and SHA-256) as the segment before it. */
export function followsDirectly(previous: SegmentManifest, segment: SegmentManifest): boolean {
  return segment.previous?.name === previous.name && segment.previous.sha256 === previous.sha256;
}

/** Breaks in the chain of consecutive segments (manifests in LSN order). */
export function chainGaps(segments: readonly SegmentManifest[]): ChainGap[] {
  const gaps: ChainGap[] = [];
  for (let i = 1; i < segments.length; i++) {
    const previous = segments[i - 1] as SegmentManifest;
    const segment = segments[i] as SegmentManifest;
    if (!followsDirectly(previous, segment)) gaps.push({ after: previous.name, before: segment.name, fromLsn: previous.endLsn, toLsn: segment.firstCommitLsn });
  }
  return gaps;
}

/** Segment manifests in LSN order. */
export async function readSegmentManifests(repo: Repository): Promise<SegmentManifest[]> {
  const names = await repo.segmentManifestNames();
  return Promise.all(names.map((n) => repo.readSegmentManifest(n)));
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
    startTime: m.startTime,
    endTime: m.endTime,
    seconds: (Date.parse(m.endTime) - Date.parse(m.startTime)) / 1000,
    storedBytes: m.totals.storedBytes,
    tables: m.totals.tables,
    rows: m.totals.rows,
  }));
  const segments = await readSegmentManifests(repo);
  const first = segments[0];
  const last = segments[segments.length - 1];
  const window = await recoverableWindow(repo, { backups: manifests, segments });
  return {
    repository: repo.storage.location,
    backups,
    segments: {
      count: segments.length,
      first: first ? { lsn: first.firstCommitLsn, time: first.firstCommitTime } : null,
      last: last ? { lsn: last.lastCommitLsn, time: last.lastCommitTime } : null,
    },
    gaps: chainGaps(segments),
    marks: segments.flatMap((s) => s.marks.map((name) => ({ name, segment: s.name }))),
    window: { earliest: window.earliest && toPoint(window.earliest), latest: window.latest && toPoint(window.latest) },
  };
}
