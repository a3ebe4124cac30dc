import type { Repository } from '../archive/repository';
import { messageOf } from '../errors';
import type { Logger } from '../logger';
import { pruneRepository } from './prune';
import { compactRepository } from './compact';

/** Beside the stream, segments are compacted once every commit in them is this old (`pitr compact`'s default). */
export const SCHEDULED_COMPACTION_AGE_MS = 3_600_000;
const SCHEDULED_COMPACTION_BYTES = 64 * 1024 * 1024;

/** How often `pitr archive --retention` prunes: hourly, or four times per window when the window is shorter than four hours. */
export function pruneIntervalMs(retentionMs: number): number {
  return Math.min(3_600_000, Math.max(1_000, Math.floor(retentionMs / 4)));
}

/**
 * Retention inside `pitr archive`: `pitr prune --retention` at start and then every `pruneIntervalMs`,
 * never two at once. Pruning is safe beside the stream (it never removes the newest segment nor a backup
 * in progress) and never removes the only backup. A failed prune is logged and tried again next time.
 * After each prune, the segments older than an hour are compacted (`pitr compact`): an archive that seals
 * a segment every second, or a heartbeat every 10 s on an idle source, keeps a few large segments per
 * day of history instead of tens of thousands, and at most a few hours of small ones.
 */
export class PruneSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly retentionMs: number,
    private readonly log: Logger,
    /** Called when a prune fails (for the error metrics). */
    private readonly onFailure: () => void = () => undefined,
  ) {}

  start(): void {
    const tick = (): void => {
      if (!this.running) this.running = this.prune().finally(() => (this.running = undefined));
    };
    this.timer = setInterval(tick, pruneIntervalMs(this.retentionMs));
    tick();
  }

  private async prune(): Promise<void> {
    try {
      const report = await pruneRepository(this.repo, { retentionMs: this.retentionMs, dryRun: false, log: this.log });
      if (!report.keptFrom)
        this.log.info({ event: 'pruned', dryRun: false, keptFrom: null, removed: report.removed }, 'no complete base backup yet: nothing pruned');
    } catch (error) {
      this.log.error({ event: 'scheduled_prune_failed', error: messageOf(error) }, 'scheduled prune failed; will retry');
      this.onFailure();
      return;
    }
    try {
      await compactRepository(this.repo, {
        olderThanMs: SCHEDULED_COMPACTION_AGE_MS,
        maxRawBytes: SCHEDULED_COMPACTION_BYTES,
        dryRun: false,
        rebuildIndex: false,
        log: this.log,
      });
    } catch (error) {
      this.log.error({ event: 'scheduled_compaction_failed', error: messageOf(error) }, 'scheduled compaction failed; will retry');
      this.onFailure();
    }
  }

  /** Stops scheduling and lets a prune in progress finish (its removals are ordered to be safe, but half a run helps nobody). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
