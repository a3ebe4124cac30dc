import type { SegmentManifest } from './segment-manifest';
import type { SlotCreation } from './slot-creation';
import { formatLsn, lsnFromSortableHex, parseLsn, type Lsn } from '../pg/lsn';
import { headOf, linkFollows, tailOf, type SegmentHead, type SegmentTail } from './index-format';

/**
 * Gaps in the archive: stretches of the source's history whose transactions are not in the repository.
 *
 * Terminology: a "recorded" gap is one `pitr init` wrote down when it created a replication slot while
 * the repository already held segments (the previous slot was invalidated or dropped): nothing between
 * the newest segment at that moment and the new slot's consistent point was archived. A "broken chain"
 * is a segment that does not name its predecessor (name and SHA-256) without such a record: a segment
 * is missing or foreign, and what it held is not known.
 */
export type GapCause = 'slot-recreated' | 'broken-chain';

/** A commit position for output: LSN in X/Y form and time (ISO, UTC, microseconds). */
export interface GapPoint {
  lsn: string;
  time: string;
}

export interface ArchiveGap {
  cause: GapCause;
  /** The re-created replication slot ('slot-recreated'), else null. */
  slot: string | null;
  /** Names of the segment before the gap and of the first one after it; null at the archive's start, or when nothing is archived after it yet. */
  after: string | null;
  before: string | null;
  /** Transactions committed at or after `fromLsn` and before `toLsn` are not in the archive. */
  fromLsn: string;
  toLsn: string;
  /** The last archived commit before the gap, the newest point restorable before it; null when nothing was archived before it. */
  from: GapPoint | null;
  /**
   * Where the archive resumes: the re-created slot's consistent point and creation time (every missed
   * transaction committed before both), or the first commit of the segment after a broken link.
   */
  to: GapPoint;
}

export interface GapSources {
  /** Manifest names of every segment present (`segments/<HI>/<FIRST>-<END>.json`), in LSN order. */
  segmentNames: readonly string[];
  /** Every segment manifest in LSN order: without them only recorded gaps are found (broken links need the manifests). */
  segments?: readonly SegmentManifest[];
  creations: readonly SlotCreation[];
  /** Aligned LSNs of the complete backups: a slot created before anything was archived matters only to a backup taken before it. */
  backups: readonly { alignedLsn: string }[];
}

const compare = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);

/** First commit LSN of a segment from its name (`segments/<HI>/<FIRST>-<END>`, with or without `.json`). */
export function firstLsnOfSegmentName(name: string): Lsn | undefined {
  const match = /\/([0-9A-F]{16})-[0-9A-F]{16}(?:\.json)?$/.exec(name);
  return match?.[1] === undefined ? undefined : lsnFromSortableHex(match[1]);
}

const baseName = (manifestName: string): string => manifestName.replace(/\.json$/, '');

/**
 * True when `segment` names `previous` (name and SHA-256) as the segment before it, or names the last raw
 * segment a compacted `previous` holds.
 */
export function followsDirectly(previous: SegmentManifest, segment: SegmentManifest): boolean {
  return linkFollows(tailOf(previous), headOf(segment));
}

/** What gap finding needs to know of the segments, however the caller learnt it (every manifest, or the index). */
export interface SegmentChain {
  has(name: string): boolean;
  /** Name of the first segment whose first commit is at or after `lsn`, or null. */
  firstAtOrAfter(lsn: Lsn): string | null;
  /** Consecutive segments whose link is broken; without it only recorded gaps are found. */
  breaks?: readonly { previous: SegmentTail; segment: SegmentHead }[];
}

function chainOf(sources: GapSources): SegmentChain {
  const present = new Set(sources.segmentNames.map(baseName));
  const segments = sources.segments;
  const breaks: { previous: SegmentTail; segment: SegmentHead }[] = [];
  if (segments)
    for (let i = 1; i < segments.length; i++) {
      const previous = segments[i - 1] as SegmentManifest;
      const segment = segments[i] as SegmentManifest;
      if (!followsDirectly(previous, segment)) breaks.push({ previous: tailOf(previous), segment: headOf(segment) });
    }
  return {
    has: (name) => present.has(name),
    firstAtOrAfter: (lsn) => {
      const name = sources.segmentNames.find((n) => (firstLsnOfSegmentName(n) ?? 0n) >= lsn);
      return name === undefined ? null : baseName(name);
    },
    ...(segments ? { breaks } : {}),
  };
}

/**
 * Gaps recorded by slot creations. Several re-creations after the same newest segment make one gap,
 * up to the newest. A slot created while nothing was archived makes a gap only for backups taken
 * before it (they need transactions it never streamed). A record whose segment is no longer in the repository describes history pruned
 * away (or a segment lost, which the chain shows as a broken link) and is left out.
 */
function recordedGaps(chain: SegmentChain, creations: readonly SlotCreation[], backups: readonly { alignedLsn: string }[]): ArchiveGap[] {
  const firstAfter = (lsn: Lsn): string | null => chain.firstAtOrAfter(lsn);
  const bySegment = new Map<string | null, SlotCreation[]>();
  const ordered = [...creations].sort((a, b) => compare(parseLsn(a.consistentPoint), parseLsn(b.consistentPoint)));
  for (const record of ordered) {
    const key = record.latestSegment?.name ?? null;
    bySegment.set(key, [...(bySegment.get(key) ?? []), record]);
  }
  const gaps: ArchiveGap[] = [];
  for (const [segment, records] of bySegment) {
    const newest = records[records.length - 1] as SlotCreation;
    const to = { lsn: newest.consistentPoint, time: newest.createdAt };
    if (segment === null) {
      // Created before anything was archived: a gap only for the backups taken before it, which cannot be replayed.
      const end = parseLsn(newest.consistentPoint);
      const older = backups.map((b) => parseLsn(b.alignedLsn)).filter((lsn) => lsn < end);
      if (older.length === 0) continue;
      const fromLsn = formatLsn(older.reduce((a, b) => (a < b ? a : b)));
      gaps.push({ cause: 'slot-recreated', slot: newest.slot, after: null, before: firstAfter(end), fromLsn, toLsn: to.lsn, from: null, to });
      continue;
    }
    const latest = newest.latestSegment as NonNullable<SlotCreation['latestSegment']>;
    if (!chain.has(segment)) continue;
    gaps.push({
      cause: 'slot-recreated',
      slot: newest.slot,
      after: segment,
      before: firstAfter(parseLsn(newest.consistentPoint)),
      fromLsn: latest.endLsn,
      toLsn: to.lsn,
      from: { lsn: latest.lastCommitLsn, time: latest.lastCommitTime },
      to,
    });
  }
  return gaps;
}

/** Links between consecutive segments that are broken and not explained by a recorded gap. */
function brokenLinks(breaks: readonly { previous: SegmentTail; segment: SegmentHead }[], recorded: readonly ArchiveGap[]): ArchiveGap[] {
  const gaps: ArchiveGap[] = [];
  for (const { previous, segment } of breaks) {
    // the first segment after a re-created slot starts a new chain on purpose
    if (segment.previous === null && recorded.some((g) => g.after === previous.name)) continue;
    gaps.push({
      cause: 'broken-chain',
      slot: null,
      after: previous.name,
      before: segment.name,
      fromLsn: previous.endLsn,
      toLsn: segment.firstCommitLsn,
      from: { lsn: previous.lastCommitLsn, time: previous.lastCommitTime },
      to: { lsn: segment.firstCommitLsn, time: segment.firstCommitTime },
    });
  }
  return gaps;
}

/** Every gap known from the sources given, in LSN order. */
export function archiveGaps(sources: GapSources): ArchiveGap[] {
  return gapsOfChain(chainOf(sources), sources.creations, sources.backups);
}

/** Every gap in a chain described by `chain`, in LSN order. */
export function gapsOfChain(chain: SegmentChain, creations: readonly SlotCreation[], backups: readonly { alignedLsn: string }[]): ArchiveGap[] {
  const recorded = recordedGaps(chain, creations, backups);
  const all = chain.breaks ? [...recorded, ...brokenLinks(chain.breaks, recorded)] : recorded;
  return all.sort((a, b) => compare(parseLsn(a.fromLsn), parseLsn(b.fromLsn)));
}

/** "time (lsn)" of a gap's bound, or the archive's start. */
export function gapPointText(point: GapPoint | null): string {
  return point ? `${point.time} (${point.lsn})` : 'the start of the archive';
}

/** Both bounds of a gap, in time and LSN. */
export function gapBounds(gap: ArchiveGap): string {
  return `from ${gapPointText(gap.from)} to ${gap.to.time} (${gap.to.lsn})`;
}

/** Why a gap is there, in a few words. */
export function gapCause(gap: ArchiveGap): string {
  return gap.cause === 'slot-recreated'
    ? `replication slot "${gap.slot ?? '?'}" re-created`
    : `segment ${gap.before ?? '?'} does not follow ${gap.after ?? '?'}`;
}

/** One line naming a gap with both bounds and its cause, for listings. */
export function describeGap(gap: ArchiveGap): string {
  return gap.cause === 'slot-recreated'
    ? `${gapBounds(gap)}: replication slot "${gap.slot ?? '?'}" was re-created, nothing committed in between was archived`
    : `${gapBounds(gap)}: segment ${gap.before ?? '?'} does not follow ${gap.after ?? '?'}, transactions in between may be missing`;
}
