import { createHash } from 'node:crypto';
import { lsnToSortableHex, parseLsn, type Lsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import type { ChangeCounts, SegmentManifest } from './segment-manifest';

/**
 * The archive's index (docs/format.md, "Index"): a cache of the segment manifests that lets the
 * commands users run often read a bounded number of objects whatever the archive's age. It is never
 * the only copy of anything: every fact in it comes from the segments, and it is rebuilt from them
 * when missing or damaged.
 *
 * Terminology: a "page" holds the manifests of a run of consecutive segments; its "level" says how
 * many runs were merged into it (level 0: PAGE_FANOUT segments, level n: PAGE_FANOUT pages of level
 * n - 1). The "catalog" is the small root object naming every page with a summary of it, in LSN order;
 * segments after its last page are the "tail", read one manifest at a time.
 */
export const INDEX_FORMAT = 2;
export const INDEX_PREFIX = 'index/';
export const CATALOG_PREFIX = 'index/catalog/';
export const PAGES_PREFIX = 'index/pages/';
/** Segments per level-0 page, and pages of one level merged into one of the next. */
export const PAGE_FANOUT = 16;
/** Pages stop growing at this level (PAGE_FANOUT^3 = 4096 segments). */
export const MAX_PAGE_LEVEL = 2;

/** The start of a segment, as a link reader needs it. */
export interface SegmentHead {
  name: string;
  firstCommitLsn: string;
  firstCommitTime: string;
  previous: SegmentManifest['previous'];
}

/** The end of a segment: what the next one must name, and the last point it holds. */
export interface SegmentTail {
  name: string;
  sha256: string;
  /** A compacted segment: the identity of the last raw segment merged into it, which the next one names. */
  merged?: SegmentManifest['merged'];
  firstCommitLsn: string;
  lastCommitLsn: string;
  lastCommitTime: string;
  endLsn: string;
}

export interface PageSummary {
  /** The page object's name. */
  page: string;
  level: number;
  segments: number;
  transactions: number;
  rawBytes: number;
  storedBytes: number;
  changes: ChangeCounts;
  ddl: number;
  first: SegmentHead;
  last: SegmentTail;
  /** The newest commit time of any segment in the page (commit times need not grow with LSNs). */
  newestCommitTime: string;
  marks: { name: string; segment: string }[];
  /** Consecutive segments inside the page whose link is broken (rare: a re-created slot, a lost segment). */
  breaks: { previous: SegmentTail; segment: SegmentHead }[];
}

export interface IndexPage {
  format: number;
  kind: 'index-page';
  level: number;
  segments: SegmentManifest[];
}

export interface IndexCatalog {
  format: number;
  kind: 'index-catalog';
  /** Catalogs are numbered; the highest is current. A writer stores number + 1 create-only, so two writers never both win. */
  sequence: number;
  systemIdentifier: string;
  database: string;
  /**
   * The first commit LSN `pitr prune` kept (null before any prune): segments before it are being removed
   * and no writer may index them again.
   */
  from: string | null;
  pages: PageSummary[];
}

export const headOf = (m: SegmentManifest): SegmentHead => ({
  name: m.name,
  firstCommitLsn: m.firstCommitLsn,
  firstCommitTime: m.firstCommitTime,
  previous: m.previous,
});

export const tailOf = (m: SegmentManifest): SegmentTail => ({
  name: m.name,
  sha256: m.sha256,
  ...(m.merged ? { merged: m.merged } : {}),
  firstCommitLsn: m.firstCommitLsn,
  lastCommitLsn: m.lastCommitLsn,
  lastCommitTime: m.lastCommitTime,
  endLsn: m.endLsn,
});

/** True when `segment` names `previous` as the segment before it (directly, or the last segment merged into it). */
export function linkFollows(previous: SegmentTail, segment: SegmentHead): boolean {
  const named = segment.previous;
  if (!named) return false;
  if (named.name === previous.name && named.sha256 === previous.sha256) return true;
  return previous.merged !== undefined && named.name === previous.merged.last.name && named.sha256 === previous.merged.last.sha256;
}

/** The summary the catalog keeps of a page (`segments` non-empty, in LSN order). */
export function summarizePage(page: string, level: number, segments: readonly SegmentManifest[]): PageSummary {
  const first = segments[0] as SegmentManifest;
  const last = segments[segments.length - 1] as SegmentManifest;
  const changes: ChangeCounts = { insert: 0, update: 0, delete: 0, truncate: 0, message: 0 };
  const summary: PageSummary = {
    page,
    level,
    segments: segments.length,
    transactions: 0,
    rawBytes: 0,
    storedBytes: 0,
    changes,
    ddl: 0,
    first: headOf(first),
    last: tailOf(last),
    newestCommitTime: last.lastCommitTime,
    marks: [],
    breaks: [],
  };
  segments.forEach((m, i) => {
    summary.transactions += m.transactions;
    summary.rawBytes += m.rawBytes;
    summary.storedBytes += m.storedBytes;
    summary.ddl += m.ddl;
    if (parseIsoMicros(m.lastCommitTime) > parseIsoMicros(summary.newestCommitTime)) summary.newestCommitTime = m.lastCommitTime;
    for (const k of Object.keys(changes) as (keyof ChangeCounts)[]) changes[k] += m.changes[k];
    for (const name of m.marks) summary.marks.push({ name, segment: m.name });
    const previous = segments[i - 1];
    if (previous && !linkFollows(tailOf(previous), headOf(m))) summary.breaks.push({ previous: tailOf(previous), segment: headOf(m) });
  });
  return summary;
}

/** `index/pages/<FIRST>-<END>-<DIGEST>.json`: the range it covers, and a digest of its content, so two different pages never share a name. */
export function pageName(segments: readonly SegmentManifest[], body: Buffer): string {
  const first = segments[0] as SegmentManifest;
  const last = segments[segments.length - 1] as SegmentManifest;
  const digest = createHash('sha256').update(body).digest('hex').slice(0, 16);
  return `${PAGES_PREFIX}${lsnToSortableHex(parseLsn(first.firstCommitLsn))}-${lsnToSortableHex(parseLsn(last.endLsn))}-${digest}.json`;
}

export const catalogName = (sequence: number): string => `${CATALOG_PREFIX}${sequence.toString(16).toUpperCase().padStart(16, '0')}.json`;

export function sequenceOfCatalogName(name: string): number | undefined {
  const match = /^index\/catalog\/([0-9A-F]{16})\.json$/.exec(name);
  return match?.[1] === undefined ? undefined : parseInt(match[1], 16);
}

export const tailEndLsn = (t: SegmentTail): Lsn => parseLsn(t.endLsn);
