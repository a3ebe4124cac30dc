import path from 'node:path';
import { parseLsn } from '../pg/lsn';
import type { Repository } from './repository';
import { SegmentBuilder } from './segment-builder';
import { segmentBaseName, segmentDataName, type ChangeCounts, type SegmentManifest } from './segment-manifest';
import { readSegmentRecords } from './segment-reader';

/** Format of a segment manifest that `pitr compact` made (docs/format.md, "Compacted segments"). */
export const COMPACTED_SEGMENT_FORMAT = 2;
/** Larger frames than the archiver's 1 MiB compress cold data a little better, and stay readable by `lz4 -d`. */
const COMPACTED_FRAME_BYTES = 4 << 20;

/**
 * One segment holding every record of `sources` (consecutive segments of one chain, in order), each
 * read through its SHA-256 check: magic once, then the sources' records as they were (each source's
 * Relation messages included, so any transaction still decodes as it did). Named and described so it
 * replaces them exactly: the same first commit and end, the sources' predecessor as its previous, and
 * the last raw segment's identity, which the segment after it names. Its bytes and manifest depend only
 * on the sources, so a compaction run again after a crash stores the same objects (a no-op).
 */
export async function mergeSegments(repo: Repository, sources: readonly SegmentManifest[], spoolDir: string): Promise<SegmentManifest> {
  const first = sources[0] as SegmentManifest;
  const last = sources[sources.length - 1] as SegmentManifest;
  const base = segmentBaseName(parseLsn(first.firstCommitLsn), parseLsn(last.endLsn));
  const builder = SegmentBuilder.create(path.join(spoolDir, `compact-${process.pid}-${path.basename(base)}.lz4`), COMPACTED_FRAME_BYTES);
  try {
    for (const source of sources) {
      for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(source.name)), source.name, source.sha256)) {
        builder.append(record);
        // keep the compressor's queue short: memory stays about one frame whatever the sources' size
        while (builder.pendingBytes > COMPACTED_FRAME_BYTES * 2) await new Promise((resolve) => setImmediate(resolve));
      }
    }
  } catch (error) {
    await builder.discard();
    throw error;
  }
  const spooled = await builder.finish();
  const changes: ChangeCounts = { insert: 0, update: 0, delete: 0, truncate: 0, message: 0 };
  for (const s of sources) for (const k of Object.keys(changes) as (keyof ChangeCounts)[]) changes[k] += s.changes[k];
  const manifest: SegmentManifest = {
    format: COMPACTED_SEGMENT_FORMAT,
    kind: 'segment',
    name: base,
    systemIdentifier: first.systemIdentifier,
    database: first.database,
    firstCommitLsn: first.firstCommitLsn,
    lastCommitLsn: last.lastCommitLsn,
    endLsn: last.endLsn,
    firstCommitTime: first.firstCommitTime,
    lastCommitTime: last.lastCommitTime,
    transactions: sources.reduce((n, s) => n + s.transactions, 0),
    changes,
    tables: [...new Set(sources.flatMap((s) => s.tables))].sort(),
    marks: sources.flatMap((s) => s.marks),
    ddl: sources.reduce((n, s) => n + s.ddl, 0),
    rawBytes: spooled.rawBytes,
    storedBytes: spooled.storedBytes,
    sha256: spooled.sha256,
    previous: first.previous,
    createdAt: last.createdAt,
    merged: {
      segments: sources.reduce((n, s) => n + (s.merged?.segments ?? 1), 0),
      last: last.merged?.last ?? { name: last.name, sha256: last.sha256 },
    },
  };
  await repo.storeSegment(base, spooled.path, manifest);
  return manifest;
}
