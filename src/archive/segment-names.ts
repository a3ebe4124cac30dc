import { lsnFromSortableHex, type Lsn } from '../pg/lsn';

/** FIRST and END of a segment object's name (`segments/<HI>/<FIRST>-<END>` with or without a suffix). */
export function segmentRangeOfName(name: string): { first: Lsn; end: Lsn } | undefined {
  const match = /\/([0-9A-F]{16})-([0-9A-F]{16})(?:\.json|\.lz4)?$/.exec(name);
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { first: lsnFromSortableHex(match[1]), end: lsnFromSortableHex(match[2]) };
}

/**
 * Drops the names a compacted segment supersedes. A compacted segment is named after the first commit of
 * its first source and the end of its last, so its range contains theirs; raw segments never overlap.
 * Until `pitr compact` has removed the sources, both are present: readers take the compacted one.
 * `names` in ascending order (FIRST, then END); the result keeps that order.
 */
export function liveSegmentNames(names: readonly string[]): string[] {
  const ranged = names.map((name) => ({ name, range: segmentRangeOfName(name) }));
  // by FIRST ascending, a wider range (larger END) first, so a container comes before what it contains
  const order = [...ranged].sort((a, b) => {
    if (!a.range || !b.range) return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    if (a.range.first !== b.range.first) return a.range.first < b.range.first ? -1 : 1;
    return a.range.end > b.range.end ? -1 : a.range.end < b.range.end ? 1 : 0;
  });
  const superseded = new Set<string>();
  let reach: Lsn = -1n;
  for (const { name, range } of order) {
    if (!range) continue;
    if (range.end <= reach) superseded.add(name);
    else reach = range.end;
  }
  return superseded.size === 0 ? [...names] : names.filter((n) => !superseded.has(n));
}

/**
 * Segment data beyond the newest manifest: an upload the archiver has under way (data is stored before
 * its manifest), or the remains of one a crash cut short, which the next archiver stores again. Neither
 * is part of the archive yet, and neither is a problem.
 */
export function uploadUnderWay(name: string, newestManifestBase: string): boolean {
  return name.endsWith('.lz4') && name.slice(0, -'.lz4'.length) > newestManifestBase;
}
