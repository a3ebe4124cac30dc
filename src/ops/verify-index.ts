import { ArchiveView } from '../archive/archive-view';
import { catalogName } from '../archive/index-format';
import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';
import { isPitrError, messageOf } from '../errors';
import { parseLsn } from '../pg/lsn';

export interface IndexProblem {
  object: string;
  status: 'missing' | 'corrupt';
  detail: string;
}

const REBUILD = 'the index is only a cache of the segments: rebuild it with "pitr compact --rebuild-index"';

/**
 * Checks the archive's index against the segment manifests verify read from the segments themselves:
 * the catalog and every page must be readable, and together with the tail they must name exactly the
 * segments present, each with its manifest's content. No index at all is not a problem (the archiver
 * builds it); a damaged one is, though nothing is lost with it.
 */
export async function verifyIndex(repo: Repository, segments: readonly SegmentManifest[]): Promise<IndexProblem[]> {
  let view: ArchiveView;
  try {
    view = await ArchiveView.open(repo);
  } catch (error) {
    if (!isPitrError(error, 'Integrity') && !isPitrError(error, 'NotFound')) throw error;
    return [{ object: 'index/', status: 'corrupt', detail: `${messageOf(error)}; ${REBUILD}` }];
  }
  if (view.source.kind === 'scan')
    return view.source.problem ? [{ object: 'index/catalog/', status: 'corrupt', detail: `${view.source.problem}; ${REBUILD}` }] : [];
  const catalog = view.source.catalog;
  const object = catalog ? catalogName(catalog.sequence) : 'index/catalog/';
  let indexed: SegmentManifest[];
  try {
    indexed = await view.all();
  } catch (error) {
    if (!isPitrError(error, 'Integrity') && !isPitrError(error, 'NotFound')) throw error;
    return [{ object, status: isPitrError(error, 'NotFound') ? 'missing' : 'corrupt', detail: `an index page is unreadable: ${messageOf(error)}; ${REBUILD}` }];
  }
  const problems: IndexProblem[] = [];
  const actual = new Map(segments.map((s) => [s.name, s]));
  const named = new Set<string>();
  // a running archiver stores segments (and indexes them) after verify read the manifests: those are not
  // problems, only what the index names within the range verify read
  const newestRead = segments.reduce((end, s) => (parseLsn(s.endLsn) > end ? parseLsn(s.endLsn) : end), -1n);
  for (const entry of indexed) {
    named.add(entry.name);
    const manifest = actual.get(entry.name);
    if (!manifest && parseLsn(entry.firstCommitLsn) > newestRead) continue;
    if (!manifest) problems.push({ object, status: 'corrupt', detail: `the index names segment ${entry.name}, which the archive does not hold; ${REBUILD}` });
    else if (manifest.sha256 !== entry.sha256 || manifest.endLsn !== entry.endLsn || manifest.transactions !== entry.transactions)
      problems.push({ object, status: 'corrupt', detail: `the index entry of segment ${entry.name} differs from its manifest; ${REBUILD}` });
  }
  const reach = indexed.length > 0 ? parseLsn((indexed[indexed.length - 1] as SegmentManifest).endLsn) : -1n;
  for (const s of segments)
    if (!named.has(s.name) && parseLsn(s.endLsn) <= reach)
      problems.push({ object, status: 'corrupt', detail: `the index leaves out segment ${s.name}; ${REBUILD}` });
  return problems;
}
