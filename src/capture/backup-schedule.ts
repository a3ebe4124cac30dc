import type { Repository } from '../archive/repository';
import { newestBackup } from '../backup/catalog';
import { runBackup, type BackupOptions } from '../backup/run-backup';
import type { SourceConnection } from '../config/connection';
import { messageOf } from '../errors';
import type { Logger } from '../logger';

/**
 * Base backups on a schedule inside `pitr archive`: one whenever the newest backup is older than
 * `everyMs` (so a restart does not take an extra one), never two at once. Backups run beside the
 * stream, which is not paused; a failed backup is logged and tried again at the next check.
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
      if (newest && Date.now() - Date.parse(newest.endTime) < this.everyMs) return;
      this.log.info({ event: 'scheduled_backup', previous: newest?.id ?? null }, 'taking a scheduled base backup');
      await runBackup({ repo: this.repo, source: this.source, log: this.log, signal: this.abort.signal }, this.options);
    } catch (error) {
      this.log.error({ event: 'scheduled_backup_failed', error: messageOf(error) }, 'scheduled base backup failed; will retry');
      this.onFailure();
    }
  }

  /** Stops scheduling and interrupts a backup in progress (its pieces are removed). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.abort.abort();
    await this.running;
  }
}
