import { parseLsn, type Lsn } from './lsn';
import type { ReplicationSession } from './replication-session';

/** One line of a timeline history file: `timeline` ended (and the next one began) at `switchpoint`. */
export interface TimelineSwitch {
  timeline: number;
  switchpoint: Lsn;
}

/** `parentTLI<TAB>switchpoint<TAB>reason` lines, as PostgreSQL writes them into NNNNNNNN.history. */
export function parseTimelineHistory(content: string): TimelineSwitch[] {
  const switches: TimelineSwitch[] = [];
  for (const line of content.split('\n')) {
    const [timeline, switchpoint] = line.trim().split(/\s+/);
    if (!timeline || !switchpoint || !/^\d+$/.test(timeline)) continue; // blank lines and comments
    switches.push({ timeline: Number(timeline), switchpoint: parseLsn(switchpoint) });
  }
  return switches;
}

/** TIMELINE_HISTORY on a replication session: where each earlier timeline of `timeline`'s history ended; none for timeline 1. */
export async function timelineHistory(session: ReplicationSession, timeline: number): Promise<TimelineSwitch[]> {
  if (timeline <= 1) return [];
  const { rows } = await session.query(`TIMELINE_HISTORY ${Number(timeline)}`);
  const content = (rows[0] as { content?: unknown } | undefined)?.content;
  return parseTimelineHistory(Buffer.isBuffer(content) ? content.toString('utf8') : String(content ?? ''));
}
