import type { BackupManifest } from '../archive/backup-manifest';
import type { Repository } from '../archive/repository';
import { newestSlotCreation } from '../archive/slot-creation';
import { newestBackup } from '../archive/backup-catalog';
import { parseLsn } from '../pg/lsn';
import { runBackup, type BackupOptions } from './run-backup';
import type { SourceConnection } from '../config/connection';
import { messageOf } from '../errors';
import type { Logger } from '../logger';

/**
 * Base backups on a schedule inside `pitr archive`: one whenever the newest backup is older than
 * `everyMs` (so a restart does not take an extra one), never two at once, and one at once when the
 * slot was re-created after a gap and no backup follows it (nothing after the gap is restorable until
 * one does). Backups run beside the stream, which is not paused; a failed backup is logged and tried
 * again at the next check.
 */
export class BackupSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly repo: Repository,
    private readonly source: SourceConnection,
    private readonly log: Logger,
    private readonly everyMs: number,
    private readonly options: BackupOptions,
    /** Called when a scheduled backup fails (for the error metrics). */
    private readonly onFailure: () => void = () => undefined,
    /** The archiver's slot, whose re-creation after a gap calls for a backup at once. */
    private readonly slot?: string,
    /** After each backup: stores it in the archiver's other repositories. A failure counts as the backup's. */
    private readonly afterBackup?: (manifest: BackupManifest) => Promise<void>,
  ) {}

  start(): void {
    const check = (): void => {
      if (!this.running) this.running = this.maybeBackup().finally(() => (this.running = undefined));
    };
    this.timer = setInterval(check, Math.min(this.everyMs, 60_000));
    check();
  }

  private async maybeBackup(): Promise<void> {
    try {
      const newest = await newestBackup(this.repo);
      const afterGap = await this.gapWithoutBackup(newest?.alignedLsn);
      if (newest && !afterGap && Date.now() - Date.parse(newest.endTime) < this.everyMs) return;
      this.log.info(
        { event: 'scheduled_backup', previous: newest?.id ?? null, afterGap: afterGap ?? null },
        afterGap ? `taking a base backup now: nothing after the gap that ends at ${afterGap} is restorable without one` : 'taking a scheduled base backup',
      );
      const manifest = await runBackup({ repo: this.repo, source: this.source, log: this.log, signal: this.abort.signal }, this.options);
      await this.afterBackup?.(manifest);
    } catch (error) {
      this.log.error({ event: 'scheduled_backup_failed', error: messageOf(error) }, 'scheduled base backup failed; will retry');
      this.onFailure();
    }
  }

  /** The new slot's consistent point when the slot was re-created after a gap and the newest backup is older; else undefined. */
  private async gapWithoutBackup(newestAligned: string | undefined): Promise<string | undefined> {
    if (!this.slot || newestAligned === undefined) return undefined;
    const creation = await newestSlotCreation(this.repo, this.slot);
    if (!creation?.latestSegment) return undefined; // a slot created on an empty repository leaves no gap
    return parseLsn(newestAligned) < parseLsn(creation.consistentPoint) ? creation.consistentPoint : undefined;
  }

  /** Stops scheduling and interrupts a backup in progress (its pieces are removed). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.abort.abort();
    await this.running;
  }
}
