import type { RestorePlan } from './plan';

/**
 * Speeds behind the dry run's time estimate, as `npm run bench:backup` and `npm run bench:restore`
 * measured them on a 2-core machine (README, Performance): loading a backup, and replaying changes.
 * A rough guide: the target's hardware, indexes and row widths move both.
 */
const LOAD_BYTES_PER_SECOND = 120 * 1024 * 1024;
const REPLAY_CHANGES_PER_SECOND = 150_000;

export interface PlanSummary {
  segments: number;
  /** Stored (compressed) bytes of the segments to read. */
  bytes: number;
  backup: { tables: number; rows: number; rawBytes: number };
  /** At most this many: the first segment may hold transactions the backup has, the last some past the target. */
  transactions: number;
  changes: number;
  estimate: { loadSeconds: number; replaySeconds: number };
  window: RestorePlan['window'];
}

export function summarisePlan(plan: RestorePlan): PlanSummary {
  let transactions = 0;
  let changes = 0;
  for (const segment of plan.segments) {
    transactions += segment.transactions;
    const c = segment.changes;
    changes += c.insert + c.update + c.delete + c.truncate + segment.ddl;
  }
  const totals = plan.backup.totals;
  return {
    segments: plan.segments.length,
    bytes: plan.segments.reduce((n, s) => n + s.storedBytes, 0),
    backup: { tables: totals.tables, rows: totals.rows, rawBytes: totals.rawBytes },
    transactions,
    changes,
    estimate: {
      loadSeconds: Math.round((totals.rawBytes / LOAD_BYTES_PER_SECOND) * 10) / 10,
      replaySeconds: Math.round((changes / REPLAY_CHANGES_PER_SECOND) * 10) / 10,
    },
    window: plan.window,
  };
}
