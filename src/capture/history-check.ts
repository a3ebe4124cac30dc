import { ArchiveView } from '../archive/archive-view';
import type { Repository } from '../archive/repository';
import { Tag } from '../archive/segment-format';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { segmentRangeOfName } from '../archive/segment-names';
import { readSegmentRecords } from '../archive/segment-reader';
import { PitrError } from '../errors';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros, pgMicrosToUnixMicros } from '../pg/pg-time';

const RUNBOOK = 'docs/runbooks/replaced-or-promoted-source.md';

/**
 * How many archived segments after the slot's position the check reads at most. A crash of the
 * archiver leaves the slot behind by the segments stored but not acknowledged (the stream pauses at
 * maxPendingSegments, default 8, sealed and waiting). A crash or restart of the source can lose the
 * slot's newest position too: PostgreSQL before 17 does not write it to disk at every acknowledgement,
 * only with the slot's other positions, which leaves it seconds to tens of seconds behind; at the 1s
 * default segment age, and several segments a second under heavy load, 256 segments cover that with
 * room to spare. It bounds what one connection reads; a slot further behind is not where a crash
 * leaves it.
 */
export const HISTORY_CHECK_SEGMENTS = 256;

/** One archived transaction as its Begin message names it: commit LSN, xid, commit time (PostgreSQL microseconds). */
export interface ArchivedCommit {
  commitLsn: Lsn;
  xid: number;
  commitTime: bigint;
}

/**
 * The transactions the archive holds after the slot's position, which the server sends again when the
 * stream starts there. The stream assembler drops them as duplicates; each is first compared with the
 * archive's, in order (same commit LSN, xid and commit time), so a server with another history after
 * that point (an older copy of the source, written since) is refused before anything of it is stored
 * or acknowledged. While `pending`, the slot is not acknowledged past `slotLsn`.
 */
export class HistoryCheck {
  private next = 0;

  constructor(
    readonly slotLsn: Lsn,
    private readonly expected: readonly ArchivedCommit[],
    private readonly source: string,
  ) {}

  /** Archived transactions not yet received again. */
  get pending(): boolean {
    return this.next < this.expected.length;
  }

  /** Called with every Begin while pending: the next archived transaction, or a PitrError('Repository'). */
  begin(commitLsn: Lsn, xid: number, commitTime: bigint): void {
    const want = this.expected[this.next];
    if (!want) return;
    if (want.commitLsn === commitLsn && want.xid === xid && want.commitTime === commitTime) {
      this.next++;
      return;
    }
    const sent = describe({ commitLsn, xid, commitTime });
    throw this.refusal(
      commitLsn > want.commitLsn
        ? `the archive's ${describe(want)} is not in its history: it sent ${sent} first`
        : commitLsn < want.commitLsn
          ? `it sent ${sent}, which the archive does not hold (the archive's next is ${describe(want)})`
          : `it sent ${sent}, where the archive holds ${describe(want)}`,
    );
  }

  /**
   * Called with a keepalive's WAL position between transactions while pending: the server has decoded
   * its WAL up to there and sent every transaction committed before, so the next archived one, if
   * committed before, is not in its history.
   */
  decodedTo(walEnd: Lsn): void {
    const want = this.expected[this.next];
    if (want && walEnd > want.commitLsn)
      throw this.refusal(`the archive's ${describe(want)} is not in its history: it has decoded its WAL up to ${formatLsn(walEnd)} without sending it`);
  }

  private refusal(what: string): PitrError {
    return new PitrError(
      'Repository',
      `source ${this.source} has another history than the archive after ${formatLsn(this.slotLsn)}: ${what}`,
      `the server was restored from an older copy or backup and written since: its transactions are not the archive's. Nothing of it was archived or acknowledged, and its slot was left where it was. Point --source at the server the archive follows, or give this one a repository of its own (${RUNBOOK})`,
    );
  }
}

/**
 * An archived segment missing between the slot's position and the archive's end: an upload cut off by a
 * crash while a later one (segments are uploaded several at a time) was stored. The server would send
 * its transactions again, which the archive does not hold; say so instead of calling it another history.
 */
function missingBefore(manifest: SegmentManifest, before: SegmentManifest | undefined, slotLsn: Lsn, where: { source: string; slot: string }): void {
  const named = manifest.previous?.name;
  if (named === undefined) return;
  const present = before ? (before.merged?.last.name ?? before.name) === named : (segmentRangeOfName(named)?.end ?? 0n) <= slotLsn;
  if (present) return;
  throw new PitrError(
    'Integrity',
    `segment ${named} is missing from the archive: ${manifest.name} names it as its previous, and replication slot "${where.slot}" on ${where.source} confirmed only ${formatLsn(slotLsn)}, before it`,
    `an upload cut off by a crash while a later segment was stored; nothing was archived or acknowledged. The server still holds those transactions: move ${manifest.name} (.json and .lz4) and the segments after it out of the repository, run "pitr compact --rebuild-index", and start the archiver again; it archives them again ("pitr verify" lists the break)`,
  );
}

function describe(c: ArchivedCommit): string {
  return `transaction ${c.xid} committed at ${formatLsn(c.commitLsn)} (${formatUnixMicros(pgMicrosToUnixMicros(c.commitTime))})`;
}

/**
 * When the slot is behind the archive's end: the check of what the server sends again (reading the
 * archived segments ending after the slot's position, at most HISTORY_CHECK_SEGMENTS of them). Null
 * when the slot is at or past the archive's end: nothing is read then.
 */
export async function historyCheck(
  repo: Repository,
  slotLsn: Lsn | null,
  storedEndLsn: Lsn,
  where: { source: string; slot: string },
  bound = HISTORY_CHECK_SEGMENTS,
): Promise<HistoryCheck | null> {
  if (slotLsn === null || slotLsn >= storedEndLsn) return null;
  const view = await ArchiveView.open(repo);
  const segments: SegmentManifest[] = [];
  for await (const manifest of view.eachSegment({ endAfter: slotLsn })) {
    // segments past the stored end are uploads of this run not yet acknowledged in order: not compared
    if (parseLsn(manifest.endLsn) > storedEndLsn) break;
    if (segments.length === bound)
      throw new PitrError(
        'Repository',
        `source ${where.source} is further behind the archive than a crash leaves: its replication slot "${where.slot}" confirmed ${formatLsn(slotLsn)}, and the archive holds more than ${bound} segments after that, up to ${formatLsn(storedEndLsn)}`,
        `the server may be an older copy or backup of the source, written since. Nothing was archived or acknowledged. Point --source at the server the archive follows, or give this one a repository of its own (${RUNBOOK})`,
      );
    missingBefore(manifest, segments[segments.length - 1], slotLsn, where);
    segments.push(manifest);
  }
  const expected: ArchivedCommit[] = [];
  for (const manifest of segments)
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(manifest.name)), manifest.name, manifest.sha256)) {
      if (record[0] !== Tag.Begin) continue;
      // Begin: tag, final (commit) LSN u64, commit time i64, xid u32; the server skips commits before its start
      const commitLsn = record.readBigUInt64BE(1);
      if (commitLsn >= slotLsn) expected.push({ commitLsn, commitTime: record.readBigInt64BE(9), xid: record.readUInt32BE(17) });
    }
  return new HistoryCheck(slotLsn, expected, where.source);
}
