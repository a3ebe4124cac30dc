import { ddlAction } from '../archive/ddl-action';
import { parseDdlRecord } from '../archive/ddl-record';
import { decodePgoutput, type LogicalMessage } from '../archive/pgoutput-decoder';
import type { Repository } from '../archive/repository';
import { MessagePrefix, Tag } from '../archive/segment-format';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentRecords } from '../archive/segment-reader';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';

/** An archived schema change a restore cannot replay, and where it is. */
export interface UnreplayableChange {
  segment: string;
  commitLsn: string;
  commitTime: string;
  xid: number;
  tag: string;
  reason: string;
}

/**
 * Every archived schema change that replay would refuse, found before an incident: reads only the
 * segments whose manifests count DDL, and decides for each record what replay would do with it (the
 * same decision replay makes, src/archive/ddl-action.ts). A change that would fail only on a given target
 * (an extension missing there, say) is not found this way; `pitr drill` finds those.
 */
export async function unreplayableChanges(repo: Repository, segments: readonly SegmentManifest[]): Promise<UnreplayableChange[]> {
  const found: UnreplayableChange[] = [];
  for (const segment of segments) {
    if (segment.ddl === 0) continue;
    let at = { commitLsn: 0n, commitTime: 0n, xid: 0 };
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(segment.name)), segment.name, segment.sha256)) {
      if (record[0] === Tag.Begin) {
        const begin = decodePgoutput(record);
        if (begin.tag === 'B') at = { commitLsn: begin.finalLsn, commitTime: begin.commitTime, xid: begin.xid };
        continue;
      }
      if (record[0] !== Tag.Message) continue;
      const message = decodePgoutput(record) as LogicalMessage;
      if (message.prefix !== MessagePrefix.Ddl) continue;
      let reason: string | undefined;
      let tag = '?';
      try {
        const parsed = parseDdlRecord(message.content);
        tag = parsed.tag || '?';
        const action = ddlAction(parsed);
        if (action.kind === 'unreplayable') reason = action.reason;
      } catch (error) {
        reason = (error as Error).message;
      }
      if (reason !== undefined)
        found.push({ segment: segment.name, commitLsn: formatLsn(at.commitLsn), commitTime: formatUnixMicros(at.commitTime), xid: at.xid, tag, reason });
    }
  }
  return found;
}
