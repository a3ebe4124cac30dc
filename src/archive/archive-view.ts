import { isPitrError } from '../errors';
import { parseLsn, type Lsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import { gapsOfChain, type ArchiveGap, type SegmentChain } from './archive-gaps';
import { mapBounded } from './bounded-map';
import { readNewestCatalog, readPage } from './index-catalog-store';
import { linkFollows, summarizePage, type IndexCatalog, type PageSummary, type SegmentHead, type SegmentTail } from './index-format';
import type { Repository } from './repository';
import { SEGMENTS_PREFIX, segmentManifestName, type SegmentManifest } from './segment-manifest';
import { liveSegmentNames, segmentRangeOfName } from './segment-names';
import type { SlotCreation } from './slot-creation';

/** A run of consecutive segments: one index page, or one segment of the tail (its manifest at hand). */
interface Unit {
  summary: PageSummary;
  manifests?: SegmentManifest[];
}

/** Which segments a reader wants; each bound is optional. */
export interface SegmentSelection {
  /** Segments ending after this LSN (what a replay from a backup aligned there needs). */
  endAfter?: Lsn;
  /** Segments whose first commit is at or before this LSN. */
  firstAtOrBefore?: Lsn;
  /** Segments with a commit at or after this time (microseconds). */
  since?: bigint;
  /** Segments with a commit at or before this time. */
  until?: bigint;
  /** Segments carrying this mark. */
  mark?: string;
}

/**
 * The archive's segments as the index (index-format.ts) describes them, plus the tail after it: every
 * command that needs segment facts starts here, so what it reads is bounded by what it asks for, not by
 * the archive's age. Without a usable catalog (none yet, or the newest damaged) it falls back to reading
 * every manifest, which is slower but gives the same answers.
 */
export class ArchiveView {
  private constructor(
    private readonly repo: Repository,
    private readonly units: Unit[],
    /** 'index' when a catalog was used, else 'scan'; with the reason the catalog was not used. */
    readonly source: { kind: 'index' | 'scan'; problem?: string; catalog?: IndexCatalog },
  ) {}

  static async open(repo: Repository): Promise<ArchiveView> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await ArchiveView.openOnce(repo);
      } catch (error) {
        // a page or a tail segment removed under us by compaction or prune: look again
        if (isPitrError(error, 'NotFound') && attempt < 2) continue;
        throw error;
      }
    }
  }

  private static async openOnce(repo: Repository): Promise<ArchiveView> {
    const read = await readNewestCatalog(repo);
    const catalog = read.catalog;
    if (!catalog || catalog.pages.length === 0) {
      const units = (await readManifestsBounded(repo, await listManifestNames(repo))).map(segmentUnit);
      return new ArchiveView(repo, units, { kind: 'scan', ...(read.problem ? { problem: read.problem } : {}) });
    }
    const last = (catalog.pages[catalog.pages.length - 1] as PageSummary).last;
    const lastCommit = parseLsn(last.lastCommitLsn);
    // the tail: segments after the catalog's last; what a compacted segment there replaced starts at or before it
    const names = (await listManifestNames(repo, segmentManifestName(last.name))).filter((n) => (segmentRangeOfName(n)?.first ?? 0n) > lastCommit);
    const tail = (await readManifestsBounded(repo, names)).map(segmentUnit);
    return new ArchiveView(repo, [...catalog.pages.map((summary) => ({ summary })), ...tail], { kind: 'index', catalog });
  }

  /** How many segments the archive holds. */
  get count(): number {
    return this.units.reduce((n, u) => n + u.summary.segments, 0);
  }

  get first(): SegmentHead | null {
    return this.units[0]?.summary.first ?? null;
  }

  get newest(): SegmentTail | null {
    return this.units[this.units.length - 1]?.summary.last ?? null;
  }

  /** Page summaries and tail segments, in LSN order (verify compares them with the segments). */
  get summaries(): readonly PageSummary[] {
    return this.units.map((u) => u.summary);
  }

  get marks(): { name: string; segment: string }[] {
    return this.units.flatMap((u) => u.summary.marks);
  }

  /** Every segment manifest, in LSN order. */
  async all(): Promise<SegmentManifest[]> {
    return this.segments({});
  }

  /** The manifests of the segments selected, in LSN order; only the pages that may hold them are read. */
  async segments(select: SegmentSelection): Promise<SegmentManifest[]> {
    const wanted = this.units.filter((u) => unitMayMatch(u.summary, select));
    const loaded = await mapBounded(wanted, (u) => this.load(u));
    return loaded.flat().filter((m) => segmentMatches(m, select));
  }

  /** The same, one page at a time: a reader that stops early reads no further. */
  async *eachSegment(select: SegmentSelection): AsyncGenerator<SegmentManifest> {
    for (const unit of this.units) {
      if (!unitMayMatch(unit.summary, select)) continue;
      for (const m of await this.load(unit)) if (segmentMatches(m, select)) yield m;
    }
  }

  /** The manifests of the pages (or tail segments) that start before `lsn` and hold a commit at or after it. */
  async straddling(lsn: Lsn): Promise<SegmentManifest[]> {
    const wanted = this.units.filter((u) => parseLsn(u.summary.first.firstCommitLsn) < lsn && parseLsn(u.summary.last.lastCommitLsn) >= lsn);
    return (await mapBounded(wanted, (u) => this.load(u))).flat();
  }

  private async load(unit: Unit): Promise<SegmentManifest[]> {
    unit.manifests ??= (await readPage(this.repo, unit.summary.page)).segments;
    return unit.manifests;
  }

  /**
   * The gaps in the archive (archive-gaps.ts): recorded ones from the slot creation records, and, unless
   * `recordedOnly`, broken links, known from the page summaries without reading every manifest.
   */
  async gaps(creations: readonly SlotCreation[], backups: readonly { alignedLsn: string }[], recordedOnly = false): Promise<ArchiveGap[]> {
    const present = new Map<string, boolean>();
    const firstAfter = new Map<Lsn, string | null>();
    for (const record of creations) {
      const point = parseLsn(record.consistentPoint);
      if (!firstAfter.has(point)) firstAfter.set(point, await this.firstAtOrAfter(point));
      const name = record.latestSegment?.name;
      if (name !== undefined && !present.has(name)) present.set(name, await this.has(name));
    }
    const chain: SegmentChain = {
      has: (name) => present.get(name) ?? false,
      firstAtOrAfter: (lsn) => firstAfter.get(lsn) ?? null,
      ...(recordedOnly ? {} : { breaks: this.breaks() }),
    };
    return gapsOfChain(chain, creations, backups);
  }

  /** Consecutive segments whose link is broken: inside pages (their summaries say) and between units. */
  private breaks(): { previous: SegmentTail; segment: SegmentHead }[] {
    const breaks: { previous: SegmentTail; segment: SegmentHead }[] = [];
    this.units.forEach((u, i) => {
      const before = this.units[i - 1];
      if (before && !linkFollows(before.summary.last, u.summary.first)) breaks.push({ previous: before.summary.last, segment: u.summary.first });
      breaks.push(...u.summary.breaks);
    });
    return breaks;
  }

  private async has(name: string): Promise<boolean> {
    const first = segmentRangeOfName(name)?.first;
    if (first === undefined) return false;
    const unit = this.units.find((u) => parseLsn(u.summary.first.firstCommitLsn) <= first && first <= parseLsn(u.summary.last.firstCommitLsn));
    return unit !== undefined && (await this.load(unit)).some((m) => m.name === name);
  }

  private async firstAtOrAfter(lsn: Lsn): Promise<string | null> {
    for (const unit of this.units) {
      if (parseLsn(unit.summary.last.firstCommitLsn) < lsn) continue;
      if (parseLsn(unit.summary.first.firstCommitLsn) >= lsn) return unit.summary.first.name;
      return (await this.load(unit)).find((m) => parseLsn(m.firstCommitLsn) >= lsn)?.name ?? null;
    }
    return null;
  }
}

function unitMayMatch(s: PageSummary, select: SegmentSelection): boolean {
  if (select.endAfter !== undefined && parseLsn(s.last.endLsn) <= select.endAfter) return false;
  if (select.firstAtOrBefore !== undefined && parseLsn(s.first.firstCommitLsn) > select.firstAtOrBefore) return false;
  if (select.since !== undefined && parseIsoMicros(s.newestCommitTime) < select.since) return false;
  if (select.until !== undefined && parseIsoMicros(s.first.firstCommitTime) > select.until) return false;
  if (select.mark !== undefined && !s.marks.some((m) => m.name === select.mark)) return false;
  return true;
}

function segmentMatches(m: SegmentManifest, select: SegmentSelection): boolean {
  if (select.endAfter !== undefined && parseLsn(m.endLsn) <= select.endAfter) return false;
  if (select.firstAtOrBefore !== undefined && parseLsn(m.firstCommitLsn) > select.firstAtOrBefore) return false;
  if (select.since !== undefined && parseIsoMicros(m.lastCommitTime) < select.since) return false;
  if (select.until !== undefined && parseIsoMicros(m.firstCommitTime) > select.until) return false;
  if (select.mark !== undefined && !m.marks.includes(select.mark)) return false;
  return true;
}

const segmentUnit = (m: SegmentManifest): Unit => ({ summary: summarizePage('', -1, [m]), manifests: [m] });

/** Manifest names of the live segments (compacted ones replace their sources), optionally only after `startAfter`. */
export async function listManifestNames(repo: Repository, startAfter?: string): Promise<string[]> {
  const { objects } = await repo.storage.list(SEGMENTS_PREFIX, startAfter === undefined ? {} : { startAfter });
  return liveSegmentNames(objects.map((o) => o.name).filter((n) => n.endsWith('.json')));
}

export function readManifestsBounded(repo: Repository, names: readonly string[]): Promise<SegmentManifest[]> {
  return mapBounded(names, (n) => repo.readSegmentManifest(n));
}
