import { archiveStatus, missingSlot, thresholdsOf, type StatusInput, type StatusReport } from './status';
import type { BackupBoundCache } from '../archive/recoverable-window';

export interface StatusProbeOptions {
  /** A report younger than this is served as it is. */
  maxAgeMs: number;
  /** A check still running after this long is answered with an unknown report (and left to finish). */
  deadlineMs: number;
}

/**
 * `pitr status` for a long-running process (the archiver's HTTP endpoint): the same report, computed at
 * most once per `maxAgeMs` however often it is asked for, one check at a time, and never waited on for
 * longer than `deadlineMs`. The source is asked over its own short-lived session with bounded waits
 * (see `archiveStatus`), never over the archiver's replication connection.
 */
export class StatusProbe {
  private last: { report: StatusReport; at: number } | undefined;
  private running: Promise<StatusReport> | undefined;
  private readonly boundCache: BackupBoundCache = new Map();

  constructor(
    private readonly input: Omit<StatusInput, 'now' | 'boundCache'>,
    private readonly options: StatusProbeOptions,
    /** Called when a check overran its deadline. */
    private readonly onTimeout: () => void = () => undefined,
  ) {}

  async report(): Promise<StatusReport> {
    if (this.last && Date.now() - this.last.at < this.options.maxAgeMs) return this.last.report;
    if (!this.running) {
      const running = archiveStatus({ ...this.input, boundCache: this.boundCache }).then((report) => {
        this.last = { report, at: Date.now() };
        return report;
      });
      const done = (): void => {
        this.running = undefined;
      };
      // settles quietly: a check that fails after its deadline has no one waiting, and must not crash the archiver
      running.then(done, done);
      this.running = running;
    }
    let timer: NodeJS.Timeout | undefined;
    const overdue = new Promise<StatusReport>((resolve) => {
      timer = setTimeout(() => {
        this.onTimeout();
        resolve(this.unanswered());
      }, this.options.deadlineMs);
    });
    try {
      return await Promise.race([this.running, overdue]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The report when the check did not finish in time: unknown (nothing could be checked), saying so. */
  private unanswered(): StatusReport {
    const seconds = Math.round(this.options.deadlineMs / 1000);
    return {
      health: 'unknown',
      reasons: [
        {
          severity: 'unknown',
          message: `status check did not finish within ${seconds}s: the source or the repository ${this.input.repo.storage.location} is not answering`,
        },
      ],
      rpoSeconds: null,
      slot: missingSlot(this.input.slotName),
      backup: null,
      window: { earliest: null, latest: null },
      gaps: [],
      archiver: 'unknown',
      thresholds: thresholdsOf(this.input.limits),
    };
  }
}
