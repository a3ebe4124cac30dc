import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ArchiverState } from '../capture/archiver';
import type { ArchiverFailure, ArchiverObserver, SegmentPosition, StoredSegment } from '../capture/archiver-observer';
import { parseLsn } from '../pg/lsn';
import { statusExitCode } from './status';
import type { StatusProbe } from './status-probe';

/** Kinds of the errors counter: the archiver's own, plus pruning and the status check itself. */
export type ErrorKindLabel = ArchiverFailure | 'prune' | 'status';
const ERROR_KINDS: readonly ErrorKindLabel[] = ['upload', 'connection', 'heartbeat', 'backup', 'prune', 'status'];
const ARCHIVER_STATES: readonly ArchiverState[] = ['starting', 'connecting', 'streaming', 'backoff', 'draining', 'stopped'];

/**
 * The archiver's Prometheus metrics. Counters and the upload histogram are fed by the archiver as it
 * works; the gauges are read at scrape time from the status probe (the same facts as `pitr status`)
 * and from what the archiver itself stored last. A gauge whose value is unknown is left out rather
 * than shown as 0: absent() alerts can catch it, and a made-up 0 would look healthy.
 *
 * Names (docs/runbooks/monitor-rpo.md): pitr_rpo_seconds, pitr_slot_lag_bytes, pitr_archived_segments_total,
 * pitr_archived_transactions_total, pitr_archived_bytes_total, pitr_segment_upload_seconds, pitr_errors_total,
 * pitr_last_backup_age_seconds, pitr_recoverable_window_seconds, pitr_archiver_state, pitr_health; with several
 * repositories, per repository (label `repository`, its name): pitr_repository_up, pitr_repository_lag_bytes,
 * pitr_repository_lag_seconds, pitr_repository_newest_commit_timestamp_seconds.
 */
export class ArchiveMetrics implements ArchiverObserver {
  readonly registry = new Registry();
  private readonly segments: Counter;
  private readonly transactions: Counter;
  private readonly bytes: Counter;
  private readonly uploadSeconds: Histogram;
  private readonly errors: Counter<'kind'>;
  /** Commit time (ms since the epoch) of the newest transaction this process stored. */
  private newestStoredCommitMs: number | undefined;
  /** The newest segment sealed, and per repository the newest it holds and whether it could be written last time. */
  private sealed: SegmentPosition | undefined;
  private readonly repositories = new Map<string, { stored?: SegmentPosition; up: boolean }>();

  constructor(
    private readonly probe: StatusProbe,
    archiverState: () => ArchiverState,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.segments = new Counter({ name: 'pitr_archived_segments_total', help: 'Segments stored (data and manifest) by this archiver.', registers });
    this.transactions = new Counter({ name: 'pitr_archived_transactions_total', help: 'Transactions in the segments stored by this archiver.', registers });
    this.bytes = new Counter({ name: 'pitr_archived_bytes_total', help: 'Bytes stored (compressed segment data) by this archiver.', registers });
    this.uploadSeconds = new Histogram({
      name: 'pitr_segment_upload_seconds',
      help: 'Time to store one segment, data and manifest, retries included.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.errors = new Counter({
      name: 'pitr_errors_total',
      help: 'Failures survived, by kind: upload (retried), connection (reconnected), heartbeat, backup (scheduled), prune, status (check timed out).',
      labelNames: ['kind'],
      registers,
    });
    // every kind shows from the start, so rate() and increase() work from the first failure on
    for (const kind of ERROR_KINDS) this.errors.inc({ kind }, 0);

    this.gauge(
      'pitr_rpo_seconds',
      'Seconds since the newest archived commit: what a disaster now would lose. The heartbeat keeps it small on an idle source.',
      async (gauge) => {
        const newest = await this.newestCommitMs();
        if (newest === undefined) gauge.remove();
        else gauge.set(Math.max(0, (Date.now() - newest) / 1000));
      },
    );
    this.gauge(
      'pitr_slot_lag_bytes',
      "WAL between the source's current position and the slot's confirmed position.",
      async (gauge) => {
        const { slot } = await probe.report();
        gauge.reset();
        if (slot.lagBytes !== null) gauge.set({ slot: slot.name }, slot.lagBytes);
      },
      ['slot'],
    );
    this.gauge('pitr_last_backup_age_seconds', 'Seconds since the newest complete base backup ended.', async (gauge) => {
      const { backup } = await probe.report();
      if (backup === null) gauge.remove();
      else gauge.set((Date.now() - Date.parse(backup.endTime)) / 1000);
    });
    this.gauge(
      'pitr_recoverable_window_seconds',
      'Length of the recoverable window: from the newest commit inside the oldest backup after the last gap to the newest archived commit; absent when no backup is after it.',
      async (gauge) => {
        const { window } = await probe.report();
        if (window.earliest === null || window.latest === null) gauge.remove();
        else gauge.set((Date.parse(window.latest.time) - Date.parse(window.earliest.time)) / 1000);
      },
    );
    this.gauge(
      'pitr_archiver_state',
      "1 for the archiver's current state (starting, connecting, streaming, backoff, draining, stopped), 0 for the others.",
      (gauge) => {
        const current = archiverState();
        for (const state of ARCHIVER_STATES) gauge.set({ state }, state === current ? 1 : 0);
      },
      ['state'],
    );
    const perRepository = (read: (r: { stored?: SegmentPosition; up: boolean }) => number | undefined) => (gauge: Gauge<string>) => {
      gauge.reset();
      for (const [repository, r] of this.repositories) {
        const value = read(r);
        if (value !== undefined) gauge.set({ repository }, value);
      }
    };
    this.gauge(
      'pitr_repository_up',
      'Per repository of an archiver writing several: 1 when its last write succeeded, 0 while it cannot be written (retried; an asynchronous one catches up later).',
      perRepository((r) => (r.up ? 1 : 0)),
      ['repository'],
    );
    this.gauge(
      'pitr_repository_lag_bytes',
      'Per repository: WAL bytes between the end of the newest segment sealed and the end of the newest segment it holds.',
      perRepository((r) => (this.sealed && r.stored ? Math.max(0, Number(parseLsn(this.sealed.endLsn) - parseLsn(r.stored.endLsn))) : undefined)),
      ['repository'],
    );
    this.gauge(
      'pitr_repository_lag_seconds',
      'Per repository: seconds of commits between the newest segment sealed and the newest segment it holds.',
      perRepository((r) =>
        this.sealed && r.stored ? Math.max(0, (Date.parse(this.sealed.lastCommitTime) - Date.parse(r.stored.lastCommitTime)) / 1000) : undefined,
      ),
      ['repository'],
    );
    this.gauge(
      'pitr_repository_newest_commit_timestamp_seconds',
      'Per repository: commit time (Unix seconds) of the newest transaction in the newest segment it holds.',
      perRepository((r) => (r.stored ? Date.parse(r.stored.lastCommitTime) / 1000 : undefined)),
      ['repository'],
    );
    this.gauge(
      'pitr_health',
      'The verdict of `pitr status` (its exit status): 0 healthy, 1 degraded, 2 broken, 3 unknown (could not check); the reasons are on /healthz and /status.',
      async (gauge) => gauge.set(statusExitCode((await probe.report()).health)),
    );
  }

  /** A gauge whose value is read at scrape time. */
  private gauge(name: string, help: string, collect: (gauge: Gauge<string>) => void | Promise<void>, labelNames: string[] = []): void {
    const gauge: Gauge<string> = new Gauge({ name, help, labelNames, registers: [this.registry], collect: () => collect(gauge) });
  }

  segmentStored(segment: StoredSegment): void {
    this.segments.inc();
    this.transactions.inc(segment.transactions);
    this.bytes.inc(segment.storedBytes);
    this.uploadSeconds.observe(segment.seconds);
    const commitMs = Date.parse(segment.lastCommitTime);
    if (!Number.isNaN(commitMs) && (this.newestStoredCommitMs === undefined || commitMs > this.newestStoredCommitMs)) this.newestStoredCommitMs = commitMs;
  }

  segmentSealed(segment: SegmentPosition): void {
    this.sealed = { endLsn: segment.endLsn, lastCommitTime: segment.lastCommitTime };
  }

  repositoryStored(repository: string, segment: SegmentPosition): void {
    const r = this.repository(repository);
    if (!r.stored || parseLsn(segment.endLsn) > parseLsn(r.stored.endLsn)) r.stored = { endLsn: segment.endLsn, lastCommitTime: segment.lastCommitTime };
    // a repository that caught up from before this process sealed anything: measured against itself until then
    if (!this.sealed || parseLsn(segment.endLsn) > parseLsn(this.sealed.endLsn)) this.sealed = r.stored;
  }

  repositoryUp(repository: string, up: boolean): void {
    this.repository(repository).up = up;
  }

  /** Tells the metrics which repositories there are before anything was written (so a down one shows from the start). */
  knowRepositories(names: readonly string[]): void {
    for (const name of names) this.repository(name);
  }

  private repository(name: string): { stored?: SegmentPosition; up: boolean } {
    let r = this.repositories.get(name);
    if (!r) this.repositories.set(name, (r = { up: true }));
    return r;
  }

  failed(kind: ErrorKindLabel): void {
    this.errors.inc({ kind });
  }

  /** The Prometheus text exposition of every metric. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** The newest archived commit: what this process stored, or what the repository holds when that is newer (or all there is). */
  private async newestCommitMs(): Promise<number | undefined> {
    const report = await this.probe.report();
    const inRepository = report.rpoSeconds === null || report.window.latest === null ? undefined : Date.parse(report.window.latest.time);
    if (inRepository === undefined) return this.newestStoredCommitMs;
    return this.newestStoredCommitMs === undefined ? inRepository : Math.max(inRepository, this.newestStoredCommitMs);
  }
}
