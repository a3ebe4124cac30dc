import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ArchiveView, listManifestNames, readManifestsBounded } from '../archive/archive-view';
import { listBackups } from '../archive/backup-catalog';
import { crashPoint } from '../archive/crash-point';
import { readPage, storePage, updateCatalog } from '../archive/index-catalog-store';
import { rebuildIndex } from '../archive/index-builder';
import { PAGE_FANOUT, linkFollows, headOf, tailOf, type PageSummary } from '../archive/index-format';
import type { Repository } from '../archive/repository';
import { mergeSegments } from '../archive/segment-merge';
import { SEGMENTS_PREFIX, segmentDataName, segmentManifestName, type SegmentManifest } from '../archive/segment-manifest';
import { liveSegmentNames } from '../archive/segment-names';
import { readSlotCreations } from '../archive/slot-creation';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { parseLsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';

export interface CompactOptions {
  /** Only segments whose every commit is older than this are merged. */
  olderThanMs: number;
  /** A compacted segment holds at most this many raw bytes (unless one source alone is larger). */
  maxRawBytes: number;
  dryRun: boolean;
  /** Build the index anew from the segment manifests first. */
  rebuildIndex: boolean;
  now?: Date;
  spoolDir?: string;
  log?: Logger;
}

export interface CompactReport {
  repository: string;
  /** Segments merged, and the compacted segments they became. */
  merged: { sources: number; into: number; rawBytes: number; storedBytesBefore: number; storedBytesAfter: number };
  /** Sources left by an interrupted compaction, removed now. */
  leftoversRemoved: number;
  indexRebuilt: boolean;
  dryRun: boolean;
}

/**
 * Merges old small segments into large ones, page by page of the index (index-format.ts). Each step
 * leaves a readable, exact archive if the process dies right after it:
 *   1. every compacted segment of the page is stored, data then manifest (until the catalog names them,
 *      readers of the index use the sources, and a listing prefers the compacted segment: both are whole);
 *   2. the page is stored again with the compacted segments, then the next catalog naming it;
 *   3. only then the sources are removed, manifest first (a source without manifest is unreferenced data).
 * A run again after a crash stores the same objects (a no-op) and removes what step 3 left.
 *
 * Never merged: the catalog's last page (the archiver appends after it), a segment with DDL or TRUNCATE
 * (replayed alone on one lane), one a slot creation record names (the gap it marks must stay visible),
 * one holding a backup's aligned LSN (its bound is found by decoding it), and across a broken link.
 */
export async function compactRepository(repo: Repository, options: CompactOptions): Promise<CompactReport> {
  const identity = await repo.identity();
  if (!identity)
    throw new PitrError('NotFound', `repository ${repo.storage.location} is empty or not initialised (no repository.json)`, 'run "pitr init" first');
  const report: CompactReport = {
    repository: repo.storage.location,
    merged: { sources: 0, into: 0, rawBytes: 0, storedBytesBefore: 0, storedBytesAfter: 0 },
    leftoversRemoved: 0,
    indexRebuilt: false,
    dryRun: options.dryRun,
  };
  let view = await ArchiveView.open(repo);
  const unindexed = view.source.kind === 'scan' && (view.source.problem !== undefined || view.count >= PAGE_FANOUT);
  if ((options.rebuildIndex || unindexed) && !options.dryRun && view.count > 0) {
    const all = options.rebuildIndex && view.source.kind === 'index' ? await readAllManifests(repo) : await view.all();
    await rebuildIndex(repo, identity, all, options.log);
    report.indexRebuilt = true;
    view = await ArchiveView.open(repo);
  }
  const cutoff = BigInt((options.now ?? new Date()).getTime() - options.olderThanMs) * 1000n;
  const pinned = new Set((await readSlotCreations(repo)).flatMap((c) => (c.latestSegment ? [c.latestSegment.name] : [])));
  const aligned = (await listBackups(repo)).map((b) => parseLsn(b.alignedLsn));
  const eligible = (m: SegmentManifest): boolean =>
    m.ddl === 0 &&
    m.changes.truncate === 0 &&
    !pinned.has(m.name) &&
    parseIsoMicros(m.lastCommitTime) < cutoff &&
    !aligned.some((a) => parseLsn(m.firstCommitLsn) < a && a <= parseLsn(m.lastCommitLsn));

  const pages = view.source.catalog?.pages ?? [];
  // a directory of its own: an archiver writing several repositories compacts each beside the others
  const spoolDir = options.spoolDir ?? (await fs.mkdtemp(path.join(tmpdir(), `pitr-compact-${process.pid}-`)));
  await fs.mkdir(spoolDir, { recursive: true });
  try {
    for (const page of pages.slice(0, -1)) {
      if (parseIsoMicros(page.first.firstCommitTime) >= cutoff) break;
      const entries = (await readPage(repo, page.page)).segments;
      const runs = runsOf(entries, eligible, options.maxRawBytes);
      if (!runs.some((r) => r.length > 1)) continue;
      const sources = runs.filter((r) => r.length > 1);
      report.merged.sources += sources.reduce((n, r) => n + r.length, 0);
      report.merged.into += sources.length;
      report.merged.rawBytes += sources.flat().reduce((n, s) => n + s.rawBytes, 0);
      report.merged.storedBytesBefore += sources.flat().reduce((n, s) => n + s.storedBytes, 0);
      if (options.dryRun) continue;
      await compactPage(repo, identity, page, runs, spoolDir, report, options.log);
    }
    if (!options.dryRun) report.leftoversRemoved = await removeLeftovers(repo, options.log);
  } finally {
    await fs.rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
  }
  options.log?.info({ event: 'compacted', ...report.merged, leftoversRemoved: report.leftoversRemoved, dryRun: options.dryRun }, 'compaction done');
  return report;
}

/** Consecutive runs of the page's segments: eligible neighbours that follow each other, up to the size limit; others alone. */
function runsOf(entries: readonly SegmentManifest[], eligible: (m: SegmentManifest) => boolean, maxRawBytes: number): SegmentManifest[][] {
  const runs: SegmentManifest[][] = [];
  let run: SegmentManifest[] = [];
  let bytes = 0;
  for (const m of entries) {
    const previous = run[run.length - 1];
    const joins = eligible(m) && previous !== undefined && eligible(previous) && linkFollows(tailOf(previous), headOf(m)) && bytes + m.rawBytes <= maxRawBytes;
    if (!joins) {
      if (run.length > 0) runs.push(run);
      run = [];
      bytes = 0;
    }
    run.push(m);
    bytes += m.rawBytes;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

async function compactPage(
  repo: Repository,
  identity: { systemIdentifier: string; database: string },
  page: PageSummary,
  runs: SegmentManifest[][],
  spoolDir: string,
  report: CompactReport,
  log?: Logger,
): Promise<void> {
  const entries: SegmentManifest[] = [];
  for (const run of runs) {
    if (run.length === 1) {
      entries.push(run[0] as SegmentManifest);
      continue;
    }
    const merged = await mergeSegments(repo, run, spoolDir);
    crashPoint('compact:segment-stored');
    report.merged.storedBytesAfter += merged.storedBytes;
    entries.push(merged);
  }
  let replaced = false;
  await updateCatalog(
    repo,
    identity,
    async (current) => {
      const at = current?.pages.findIndex((p) => p.page === page.page) ?? -1;
      if (!current || at < 0) return null; // changed meanwhile (prune, another compaction): leave this page
      const pages = [...current.pages];
      pages[at] = await storePage(repo, page.level, entries);
      crashPoint('compact:page-stored');
      replaced = true;
      return pages;
    },
    log,
  );
  if (!replaced) return;
  crashPoint('compact:catalog-stored');
  for (const source of runs.filter((r) => r.length > 1).flat()) {
    await repo.storage.remove(segmentManifestName(source.name));
    crashPoint('compact:source-manifest-removed');
    await repo.storage.remove(segmentDataName(source.name));
  }
  log?.info(
    { event: 'page_compacted', page: page.page, segments: page.segments, now: entries.length },
    `compacted ${page.segments} segments into ${entries.length}`,
  );
}

/**
 * Sources an interrupted compaction left (superseded by a compacted segment the index names), and data
 * objects of sources whose manifest is already gone. Those the index still names stay: they are in use.
 */
async function removeLeftovers(repo: Repository, log?: Logger): Promise<number> {
  const { objects } = await repo.storage.list(SEGMENTS_PREFIX);
  const manifests = objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
  const live = liveSegmentNames(manifests);
  const liveSet = new Set(live);
  const named = new Set((await (await ArchiveView.open(repo)).all()).map((m) => segmentManifestName(m.name)));
  const superseded = manifests.filter((n) => !liveSet.has(n) && !named.has(n));
  // data without a manifest inside a compacted segment's range: the remains of step 3
  const present = new Set(objects.map((o) => o.name));
  const orphanData = objects
    .map((o) => o.name)
    .filter((n) => n.endsWith('.lz4') && !present.has(`${n.slice(0, -'.lz4'.length)}.json`))
    .filter(
      (n) =>
        !liveSet.has(`${n.slice(0, -'.lz4'.length)}.json`) && liveSegmentNames([...live, `${n.slice(0, -'.lz4'.length)}.json`].sort()).length === live.length,
    );
  for (const name of superseded) {
    await repo.storage.remove(name);
    await repo.storage.remove(`${name.slice(0, -'.json'.length)}.lz4`);
  }
  for (const name of orphanData) await repo.storage.remove(name);
  const count = superseded.length + orphanData.length;
  if (count > 0) log?.info({ event: 'compaction_leftovers_removed', count }, `removed ${count} objects an interrupted compaction left`);
  return count;
}

/** Every manifest, read from the segments themselves (not the index being rebuilt). */
async function readAllManifests(repo: Repository): Promise<SegmentManifest[]> {
  return readManifestsBounded(repo, await listManifestNames(repo));
}
