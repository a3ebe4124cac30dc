import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { mapBounded } from '../../src/archive/bounded-map';
import { encodeCheckedJson } from '../../src/archive/checked-json';
import { SegmentBuilder } from '../../src/archive/segment-builder';
import { FORMAT_VERSION, MessagePrefix } from '../../src/archive/segment-format';
import { segmentBaseName, segmentDataName, segmentManifestName, type SegmentManifest } from '../../src/archive/segment-manifest';
import { formatLsn, type Lsn } from '../../src/pg/lsn';
import { formatUnixMicros, unixMicrosToPgMicros } from '../../src/pg/pg-time';

/** LSN room one heartbeat segment takes. */
export const HEARTBEAT_LSN_STEP = 0x80n;

/** One heartbeat transaction as pgoutput sends it: Begin, the transactional logical message, Commit. */
export function heartbeatRecords(commitLsn: Lsn, endLsn: Lsn, commitTime: bigint, xid: number): Buffer[] {
  const pgTime = unixMicrosToPgMicros(commitTime);
  const begin = Buffer.alloc(21);
  begin.write('B', 0, 'latin1');
  begin.writeBigUInt64BE(commitLsn, 1);
  begin.writeBigInt64BE(pgTime, 9);
  begin.writeUInt32BE(xid, 17);
  const prefix = Buffer.from(`${MessagePrefix.Heartbeat}\0`, 'utf8');
  const content = Buffer.from(JSON.stringify({ time: formatUnixMicros(commitTime), sequences: [] }), 'utf8');
  const message = Buffer.alloc(14 + prefix.length + content.length);
  message.write('M', 0, 'latin1');
  message.writeUInt8(1, 1); // transactional
  message.writeBigUInt64BE(commitLsn - 0x30n, 2);
  prefix.copy(message, 10);
  message.writeUInt32BE(content.length, 10 + prefix.length);
  content.copy(message, 14 + prefix.length);
  const commit = Buffer.alloc(26);
  commit.write('C', 0, 'latin1');
  commit.writeUInt8(0, 1);
  commit.writeBigUInt64BE(commitLsn, 2);
  commit.writeBigUInt64BE(endLsn, 10);
  commit.writeBigInt64BE(pgTime, 18);
  return [begin, message, commit];
}

export interface HeartbeatRun {
  /** The segment before the first (null: the first starts a chain). */
  previous: SegmentManifest['previous'];
  identity: { systemIdentifier: string; database: string };
  firstLsn: Lsn;
  /** Commit time of the first, microseconds since the Unix epoch; each next one 100 µs later. */
  firstTime: bigint;
  count: number;
  spoolDir: string;
  /** Stores one object (data before manifest, as the archiver does). */
  store(name: string, data: Buffer): Promise<void>;
}

/**
 * What an idle archiver writes: one heartbeat transaction per segment, chained, each segment's bytes
 * through SegmentBuilder and its manifest as the archiver makes it. For tests and benchmarks that need
 * archives of many segments without hours of streaming.
 */
export async function writeHeartbeatSegments(run: HeartbeatRun): Promise<SegmentManifest[]> {
  const plans = Array.from({ length: run.count }, (_, i) => {
    const commitLsn = run.firstLsn + HEARTBEAT_LSN_STEP * BigInt(i);
    return { commitLsn, endLsn: commitLsn + 0x30n, time: run.firstTime + BigInt(i) * 100n, xid: 10_000_000 + i };
  });
  const built = await mapBounded(
    plans,
    async (p) => {
      const base = segmentBaseName(p.commitLsn, p.endLsn);
      const file = path.join(run.spoolDir, `${path.basename(base)}.lz4`);
      const builder = SegmentBuilder.create(file);
      for (const record of heartbeatRecords(p.commitLsn, p.endLsn, p.time, p.xid)) builder.append(record);
      const written = await builder.finish();
      await run.store(segmentDataName(base), readFileSync(file));
      rmSync(file);
      return { base, p, written };
    },
    8,
  );
  const manifests: SegmentManifest[] = [];
  let previous = run.previous;
  for (const { base, p, written } of built) {
    const manifest: SegmentManifest = {
      format: FORMAT_VERSION,
      kind: 'segment',
      name: base,
      ...run.identity,
      firstCommitLsn: formatLsn(p.commitLsn),
      lastCommitLsn: formatLsn(p.commitLsn),
      endLsn: formatLsn(p.endLsn),
      firstCommitTime: formatUnixMicros(p.time),
      lastCommitTime: formatUnixMicros(p.time),
      transactions: 1,
      changes: { insert: 0, update: 0, delete: 0, truncate: 0, message: 1 },
      tables: [],
      marks: [],
      ddl: 0,
      rawBytes: written.rawBytes,
      storedBytes: written.storedBytes,
      sha256: written.sha256,
      previous,
      createdAt: new Date(Number(p.time / 1000n)).toISOString(),
    };
    await run.store(segmentManifestName(base), encodeCheckedJson(manifest));
    previous = { name: base, sha256: written.sha256 };
    manifests.push(manifest);
  }
  return manifests;
}
