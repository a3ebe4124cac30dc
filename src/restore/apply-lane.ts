import type { Client } from 'pg';
import type { SegmentManifest } from '../archive/segment-manifest';
import type { DeleteMessage, UpdateMessage } from '../archive/pgoutput-decoder';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { applyBatch } from './batch-statement';
import type { DdlAction } from '../archive/ddl-action';
import { replayDdl, type ChangePosition } from './ddl-replay';
import type { Deferred } from './deferred';
import type { ReplayRelation } from './replay-relation';
import { recordPartProgress, recordProgress, recordRoutes, recordTableProgress, type AppliedCommit, type TablePart } from './restore-state';
import { applyRowChange } from './row-statement';
import type { TableBatch } from './table-batch';
import type { TargetColumns } from './target-columns';
import { holdTriggers } from './trigger-guard';
import { crashPoint } from '../archive/crash-point';

/** Work for one lane, in the order it must run. */
export type LaneJob = { segment: SegmentManifest } &
  /** `parts`: how many parts the batch's table is split into, when it is (batch.part >= 0). */
  (
    | { kind: 'batch'; batch: TableBatch; parts?: number }
    | { kind: 'row'; relation: ReplayRelation; message: UpdateMessage | DeleteMessage }
    | { kind: 'truncate'; relations: ReplayRelation[]; cascade: boolean; restartIdentity: boolean }
    | { kind: 'ddl'; action: Extract<DdlAction, { kind: 'run' }>; position: ChangePosition }
    /**
     * Runs `run` on the lane's connection, in order with the rest (inside its open transaction, if any;
     * with `touches`, inside one, as a change to that part of a split table).
     */
    | { kind: 'call'; run: (client: Client) => Promise<void>; done: Deferred; touches?: TablePart }
    | {
        kind: 'commit';
        /** Serial segments record the restore's progress in the same transaction as their changes. */
        progress?: { last: AppliedCommit; transactions: number; changes: number };
        /** Parallel segments record, per table, the last commit applied to it. */
        tablesUpTo?: string;
        /** Routes of relations first met since the last commit (source relation id, target table OID). */
        routes?: readonly (readonly [number, number])[];
        done: Deferred;
      }
  );

export interface LaneFailure {
  error: unknown;
  segment: SegmentManifest;
}

const jobBytes = (job: LaneJob): number => (job.kind === 'batch' ? job.batch.bytes : 256);

/**
 * One connection to the target and the queue of work it applies, in order, one statement at a time,
 * while the reader decodes ahead. The lane opens a transaction at its first change of a segment and
 * commits it at the segment's commit job, which is queued only once the segment's checksum passed.
 * After a failure it runs nothing more; `rollback()` then ends its open transaction.
 */
export class ApplyLane {
  private queue: LaneJob[] = [];
  private head = 0;
  private queued = 0;
  private running = false;
  private inTransaction = false;
  private readonly touched = new Set<number>();
  /** Parts of split tables changed in the open transaction, by "relation id/part". */
  private readonly touchedParts = new Map<string, TablePart>();
  /** The open transaction deleted a row whose key moved to another part (crash tests stop right after it commits). */
  private moved = false;
  private waiters: (() => void)[] = [];
  failure: LaneFailure | undefined;
  private aborted = false;
  /** Bytes of changes routed to this lane so far, counted as they are read (to share tables out evenly). */
  load = 0;
  /** Nanoseconds spent applying changes, in all and per table (archived name): where a replay's time went. */
  busyNs = 0n;
  readonly tableNs = new Map<string, bigint>();

  constructor(
    readonly client: Client,
    private readonly columns: TargetColumns,
    private readonly someTables: boolean,
    private readonly log: Logger,
    /** SIGINT/SIGTERM: waiting for room or for the lane to be idle ends at once. */
    private readonly signal?: AbortSignal,
  ) {
    signal?.addEventListener('abort', () => this.wake(), { once: true });
  }

  push(job: LaneJob): void {
    if (this.failure || this.aborted) {
      if (job.kind === 'commit' || job.kind === 'call') job.done.reject(this.failure?.error ?? new Error('replay stopped'));
      return;
    }
    const bytes = jobBytes(job);
    this.queue.push(job);
    this.queued += bytes;
    if (!this.running) void this.pump();
  }

  /** Resolves once at most `bytes` are queued, or the lane failed, or the replay was interrupted. */
  async room(bytes: number): Promise<void> {
    while (this.queued > bytes && !this.failure && !this.signal?.aborted) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once everything queued has run, or the lane failed, or the replay was interrupted. */
  async idle(): Promise<void> {
    while (this.running && !this.failure && !this.signal?.aborted) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private async pump(): Promise<void> {
    this.running = true;
    while (this.head < this.queue.length && !this.failure && !this.aborted) {
      const job = this.queue[this.head] as LaneJob;
      this.queue[this.head++] = undefined as unknown as LaneJob; // let the batch go
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      const started = process.hrtime.bigint();
      try {
        await this.run(job);
        this.account(job, process.hrtime.bigint() - started);
      } catch (error) {
        const failure = describeFailure(job, error);
        this.failure = { error: failure, segment: job.segment };
        if (job.kind === 'commit' || job.kind === 'call') job.done.reject(failure);
        this.dropQueue(failure);
      }
      this.queued = Math.max(0, this.queued - jobBytes(job));
      this.wake();
    }
    this.running = false;
    this.wake();
  }

  private account(job: LaneJob, ns: bigint): void {
    this.busyNs += ns;
    const relation = job.kind === 'batch' ? job.batch.relation : job.kind === 'row' ? job.relation : undefined;
    if (relation) this.tableNs.set(relation.name, (this.tableNs.get(relation.name) ?? 0n) + ns);
  }

  private dropQueue(error: unknown): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const dropped = this.queue[i];
      if (dropped?.kind === 'commit' || dropped?.kind === 'call') dropped.done.reject(error);
    }
    this.queue = [];
    this.head = 0;
    this.queued = 0;
  }

  private async begin(): Promise<void> {
    if (this.inTransaction) return;
    await this.client.query('BEGIN');
    this.inTransaction = true;
  }

  private async run(job: LaneJob): Promise<void> {
    switch (job.kind) {
      case 'batch': {
        await this.begin();
        const relation = job.batch.relation;
        const relationId = relation.message.relationId;
        if (job.batch.part < 0) this.touched.add(relationId);
        else this.touchedParts.set(`${relationId}/${job.batch.part}`, { relationId, part: job.batch.part, parts: job.parts ?? 0 });
        const target = this.columns.peek(relation.target?.oid ?? 0) ?? (await this.columnsOf(relation));
        await applyBatch(this.client, target, job.batch);
        return;
      }
      case 'row': {
        await this.begin();
        this.touched.add(job.relation.message.relationId);
        await applyRowChange(this.client, job.relation, await this.columnsOf(job.relation), job.message);
        return;
      }
      case 'truncate': {
        await this.begin();
        const names = job.relations.map((r) => r.sql).join(', ');
        await this.client.query(`TRUNCATE ONLY ${names}${job.restartIdentity ? ' RESTART IDENTITY' : ''}${job.cascade ? ' CASCADE' : ''}`);
        return;
      }
      case 'ddl': {
        await this.begin();
        await replayDdl(this.client, job.action, job.position, { someTables: this.someTables, log: this.log });
        await holdTriggers(this.client); // a trigger it created or enabled ALWAYS must not fire on the archived rows
        this.columns.clear();
        return;
      }
      case 'call': {
        if (job.touches) {
          await this.begin();
          const { relationId, part } = job.touches;
          this.touchedParts.set(`${relationId}/${part}`, job.touches);
          this.moved = true;
        }
        await job.run(this.client);
        job.done.resolve();
        return;
      }
      case 'commit': {
        // a serial segment records its progress even when none of its changes were for tables restored
        if (job.progress || job.routes?.length) await this.begin();
        if (this.inTransaction) {
          if (job.progress) await recordProgress(this.client, job.progress.last, job.progress.transactions, job.progress.changes);
          if (job.routes) await recordRoutes(this.client, job.routes);
          if (job.tablesUpTo !== undefined && this.touched.size > 0) await recordTableProgress(this.client, [...this.touched], job.tablesUpTo);
          if (job.tablesUpTo !== undefined && this.touchedParts.size > 0)
            await recordPartProgress(this.client, [...this.touchedParts.values()], job.tablesUpTo);
          await this.client.query('COMMIT');
          this.inTransaction = false;
        }
        this.touched.clear();
        this.touchedParts.clear();
        if (this.moved) crashPoint('replay:moved-row-committed');
        this.moved = false;
        job.done.resolve();
        return;
      }
      default: {
        const never: never = job;
        throw new Error(`unknown lane job ${String(never)}`);
      }
    }
  }

  private columnsOf(relation: ReplayRelation): ReturnType<TargetColumns['get']> {
    return this.columns.get(this.client, relation.target?.oid ?? 0);
  }

  /**
   * After the replay stopped (a corrupt segment, an interruption, another lane's failure): runs what is
   * queued up to its last commit, whose segments all passed their checksums, so that every lane ends at
   * the same commit group (the parts of a split table at one transaction boundary); drops the rest and
   * ends the open transaction without committing it.
   */
  async settle(): Promise<void> {
    let last = this.head - 1;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]?.kind === 'commit') last = i;
    for (const dropped of this.queue.splice(last + 1))
      if (dropped.kind === 'commit' || dropped.kind === 'call') dropped.done.reject(new Error('replay stopped'));
    while (this.running && !this.failure) await new Promise<void>((resolve) => this.waiters.push(resolve));
    await this.rollback();
  }

  /** Drops what is queued, waits for the statement in flight and ends the open transaction without committing it. */
  async rollback(): Promise<void> {
    this.aborted = true;
    this.dropQueue(new Error('replay stopped'));
    while (this.running) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.inTransaction) {
      this.inTransaction = false;
      await this.client.query('ROLLBACK').catch(() => undefined);
    }
  }
}

/**
 * A statement the target refused, named by what was being applied: which table, in which segment.
 * The target's own message says what was wrong with the value or the schema.
 */
function describeFailure(job: LaneJob, error: unknown): unknown {
  if (error instanceof PitrError) return error;
  const message = (error as { message?: string }).message ?? String(error);
  switch (job.kind) {
    case 'batch':
    case 'row':
    case 'truncate': {
      const relation = job.kind === 'batch' ? job.batch.relation : job.kind === 'row' ? job.relation : job.relations[0];
      return new PitrError(
        'Replay',
        `cannot apply the archived changes of ${relation?.name ?? 'a table'} (into ${relation?.sql ?? '?'}) from segment ${job.segment.name}: ${message}`,
        'the target database differs from the source at this point; "pitr log" shows the transactions of that segment',
        { cause: error },
      );
    }
    case 'ddl':
    case 'call':
    case 'commit':
      return error;
    default: {
      const never: never = job;
      return never;
    }
  }
}
