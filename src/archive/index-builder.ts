import type { Logger } from '../logger';
import { parseLsn } from '../pg/lsn';
import { mapBounded } from './bounded-map';
import { readPage, storePage, updateCatalog } from './index-catalog-store';
import { MAX_PAGE_LEVEL, PAGE_FANOUT, type IndexCatalog, type PageSummary } from './index-format';
import type { Repository } from './repository';
import type { SegmentManifest } from './segment-manifest';
import { crashPoint } from './crash-point';

export type SourceIdentity = { systemIdentifier: string; database: string };

/** Segments a page of `level` holds when full. */
export const pageCapacity = (level: number): number => PAGE_FANOUT ** (level + 1);

/**
 * Pages for `segments` (consecutive, in LSN order): the largest full pages first, so an index built in
 * one go looks like one grown segment by segment. What does not fill a level-0 page is left for the tail.
 */
export async function storePagesFor(repo: Repository, segments: readonly SegmentManifest[]): Promise<{ pages: PageSummary[]; rest: SegmentManifest[] }> {
  const runs: { level: number; segments: SegmentManifest[] }[] = [];
  let at = 0;
  for (let level = MAX_PAGE_LEVEL; level >= 0; level--) {
    const size = pageCapacity(level);
    while (segments.length - at >= size) {
      runs.push({ level, segments: segments.slice(at, at + size) });
      at += size;
    }
  }
  const pages = await mapBounded(runs, (run) => storePage(repo, run.level, run.segments), 4);
  return { pages, rest: segments.slice(at) };
}

/**
 * Merges the catalog's trailing pages while PAGE_FANOUT of them share a level below the highest: the
 * number of pages grows with the logarithm of the archive's length, not with it.
 */
export async function mergeTrailingPages(repo: Repository, pages: PageSummary[]): Promise<PageSummary[]> {
  const result = [...pages];
  for (;;) {
    const trailing = result.slice(-PAGE_FANOUT);
    const level = trailing[0]?.level;
    if (trailing.length < PAGE_FANOUT || level === undefined || level >= MAX_PAGE_LEVEL || trailing.some((p) => p.level !== level)) return result;
    const segments = (await mapBounded(trailing, async (p) => (await readPage(repo, p.page)).segments, 4)).flat();
    const merged = await storePage(repo, level + 1, segments);
    crashPoint('index:merged-page-stored');
    result.splice(result.length - PAGE_FANOUT, PAGE_FANOUT, merged);
  }
}

/** Whether `pages` end exactly where `segment` begins (nothing between them left out of the index). */
export function catalogEndsBefore(catalog: IndexCatalog | null, segment: SegmentManifest, predecessor: string | null): boolean {
  const last = catalog?.pages[catalog.pages.length - 1]?.last;
  if (!last) return predecessor === null;
  return last.name === predecessor && parseLsn(last.endLsn) <= parseLsn(segment.firstCommitLsn);
}

/** Builds the index anew from every segment manifest given (a missing or damaged index, or `pitr compact --rebuild-index`). */
export async function rebuildIndex(
  repo: Repository,
  identity: SourceIdentity,
  segments: readonly SegmentManifest[],
  log?: Logger,
): Promise<IndexCatalog | null> {
  const catalog = await updateCatalog(
    repo,
    identity,
    async (current) => {
      // what prune is removing is not indexed again
      const from = current?.from ? parseLsn(current.from) : -1n;
      return (
        await storePagesFor(
          repo,
          segments.filter((m) => parseLsn(m.firstCommitLsn) >= from),
        )
      ).pages;
    },
    log,
  );
  log?.info({ event: 'index_rebuilt', segments: segments.length, pages: catalog?.pages.length ?? 0 }, `index rebuilt from ${segments.length} segments`);
  return catalog;
}
