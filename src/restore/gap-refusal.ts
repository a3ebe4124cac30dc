import { gapBounds, gapCause, gapPointText, type ArchiveGap } from '../archive/archive-gaps';
import { pointText, type RecoverableRange } from '../archive/recoverable-window';
import { PitrError } from '../errors';
import { parseLsn } from '../pg/lsn';
import { parseIsoMicros } from '../pg/pg-time';
import type { TargetSpec } from './target';

/**
 * The refusal of a target inside a gap, or after one with no backup between them: both bounds of the gap,
 * and where restorable points are instead.
 */
export function gapRefusal(gap: ArchiveGap, resolved: string, target: TargetSpec, ranges: readonly RecoverableRange[]): PitrError {
  const inside = target.kind === 'time' ? target.micros < parseIsoMicros(gap.to.time) : target.kind === 'lsn' ? target.lsn < parseLsn(gap.toLsn) : false; // latest, a mark or a transaction: an archived commit, so after the gap
  const next = ranges.find((r) => r.earliest.lsn >= parseLsn(gap.toLsn));
  const before = gap.from ? `up to ${gapPointText(gap.from)}` : undefined;
  const afterGap = next ? `from ${pointText(next.earliest)} on (backup ${next.backup})` : undefined;
  const choose = [before, afterGap].filter((t) => t !== undefined).join(', or ');
  if (inside)
    return new PitrError(
      'Integrity',
      `restore target ${resolved} lies inside a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}): no point inside it can be restored`,
      next
        ? `choose a target ${choose} ("pitr list")`
        : `choose a target ${before ?? 'after the gap'}; points after the gap need a base backup taken after it: take one now ("pitr backup")`,
    );
  return new PitrError(
    'Integrity',
    next
      ? `restore target ${resolved} lies after a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}) but before the earliest point restorable after it, ${pointText(next.earliest)}`
      : `restore target ${resolved} lies after a gap in the archive ${gapBounds(gap)} (${gapCause(gap)}) and every base backup is older than the gap`,
    next
      ? `choose a target ${choose} ("pitr list")`
      : `take a new base backup now ("pitr backup"): points after it become restorable${before ? `; targets ${before} still are` : ''}`,
  );
}
