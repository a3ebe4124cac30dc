import type { Repository } from '../archive/repository';
import { MessagePrefix, Tag } from '../archive/segment-format';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentFrames, type RecordFrame } from '../archive/segment-reader';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import {
  decodePgoutput,
  type BeginMessage,
  type DeleteMessage,
  type LogicalMessage,
  type RelationMessage,
  type TruncateMessage,
  type UpdateMessage,
} from '../archive/pgoutput-decoder';
import { PitrError, isPitrError } from '../errors';
import type { ApplyLane, LaneFailure, LaneJob } from './apply-lane';
import { BatchRouter } from './batch-router';
import { throwIfInterrupted } from './interrupted';
import { RawChange } from './raw-change';
import { readAhead } from './read-ahead';
import type { HeartbeatSequences, ReplayInput, ReplayResult } from './replay-input';
import { replayRelation, tablesUniqueOnlyByKey, type ReplayRelation } from './replay-relation';
import { recordProgress, type AppliedCommit } from './restore-state';
import { explainSegmentFailure } from './segment-failure';
import type { TableBatch } from './table-batch';

const READ_AHEAD_FRAMES = 4;
const YIELD_EVERY = 256;
const yieldToLanes = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const LANE_QUEUE_BYTES = 8 * 1024 * 1024;

type Item = { kind: 'start' | 'end'; segment: SegmentManifest } | { kind: 'records'; segment: SegmentManifest; frame: RecordFrame };

async function* segmentItems(repo: Repository, segments: SegmentManifest[]): AsyncGenerator<Item> {
  for (const segment of segments) {
    yield { kind: 'start', segment };
    for await (const frame of readSegmentFrames(repo.storage.readStream(segmentDataName(segment.name)), segment.name, segment.sha256))
      yield { kind: 'records', segment, frame };
    yield { kind: 'end', segment };
  }
}

class LaneFailed extends Error {
  constructor(readonly failure: LaneFailure) {
    super('a lane failed');
  }
}

/** What one segment contributed. */
interface SegmentTally {
  segment: SegmentManifest;
  serial: boolean;
  transactions: number;
  changes: number;
  last: AppliedCommit | undefined;
}

/**
 * The segment loop of a replay (see replay.ts for the terminology): reads the segments ahead, routes
 * each archived message, hands batches and barriers to the lanes and records progress.
 */
export class SegmentReplay {
  private readonly aligned: Lsn;
  private readonly relations = new Map<number, ReplayRelation>();
  private readonly laneOf = new Map<number, ApplyLane>();
  private readonly change = new RawChange();
  private readonly router: BatchRouter;
  private readonly tableProgress: Map<number, Lsn>;
  private tally: SegmentTally | undefined;
  private transaction: { commitLsn: Lsn; commitTime: bigint; xid: number } | undefined;
  private applying = false;
  private stopped = false;
  private progress: Promise<void> = Promise.resolve();
  private keyOnlyUnique: ReadonlySet<string> = new Set();
  /** DDL ran in this segment: the catalog facts behind reordering are stale until the next one. */
  private afterDdl = false;
  private transactions = 0;
  private changes = 0;
  private sequences: HeartbeatSequences | undefined;

  constructor(
    private readonly input: ReplayInput,
    private readonly lanes: ApplyLane[],
    tableProgress: Map<number, string>,
  ) {
    this.aligned = parseLsn(input.plan.backup.alignedLsn);
    this.router = new BatchRouter(
      (batch) => this.handOn(batch),
      (relation) => relation.reorderable && !this.afterDdl,
    );
    this.tableProgress = new Map([...tableProgress].map(([id, lsn]) => [id, parseLsn(lsn)]));
  }

  async run(segments: SegmentManifest[]): Promise<ReplayResult> {
    this.keyOnlyUnique = await tablesUniqueOnlyByKey(this.input.client);
    const items = readAhead(segmentItems(this.input.repo, segments), READ_AHEAD_FRAMES);
    try {
      for await (const item of items) {
        throwIfInterrupted(this.input.signal, 'during replay');
        this.throwIfLaneFailed();
        if (item.kind === 'start') await this.startSegment(item.segment);
        else if (item.kind === 'records') {
          const { data, starts, ends, count } = item.frame;
          for (let i = 0; i < count; i++) {
            this.record(data, starts[i] as number, ends[i] as number);
            // let the lanes hear their answers and send their next statements
            if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLanes();
          }
          for (const lane of this.lanes) await lane.room(LANE_QUEUE_BYTES);
          throwIfInterrupted(this.input.signal, 'during replay');
          this.throwIfLaneFailed();
        } else {
          this.endSegment();
          if (this.stopped) break;
        }
      }
      await this.barrier();
      return { transactions: this.transactions, changes: this.changes, sequences: this.sequences };
    } catch (error) {
      const failure = error instanceof LaneFailed ? error.failure : this.lanes.find((l) => l.failure)?.failure;
      for (const lane of this.lanes) await lane.rollback();
      if (!failure && isPitrError(error, 'Interrupted')) throw error;
      const segment = failure?.segment ?? this.tally?.segment;
      const cause = failure ? failure.error : error;
      throw segment ? await explainSegmentFailure(this.input.repo, segment, cause) : cause;
    } finally {
      await items.return(undefined);
    }
  }

  private throwIfLaneFailed(): void {
    for (const lane of this.lanes) if (lane.failure) throw new LaneFailed(lane.failure);
  }

  /** Waits until every lane has run everything queued and the progress of parallel segments is recorded. */
  private async barrier(): Promise<void> {
    for (const lane of this.lanes) await lane.idle();
    throwIfInterrupted(this.input.signal, 'during replay');
    this.throwIfLaneFailed();
    await this.progress;
  }

  private async startSegment(segment: SegmentManifest): Promise<void> {
    const serial = this.lanes.length === 1 || segment.ddl !== 0 || segment.changes?.truncate !== 0;
    // DDL and TRUNCATE take locks the other lanes' open transactions could hold: nothing runs beside them
    if (this.lanes.length > 1 && (serial || this.tally?.serial)) await this.barrier();
    if (this.afterDdl) {
      await this.barrier();
      this.keyOnlyUnique = await tablesUniqueOnlyByKey(this.input.client);
      for (const [id, relation] of this.relations) this.relations.set(id, replayRelation(relation.message, this.input.tables, this.keyOnlyUnique));
      this.afterDdl = false;
    }
    this.tally = { segment, serial, transactions: 0, changes: 0, last: undefined };
  }

  private endSegment(): void {
    const tally = this.tally as SegmentTally;
    this.router.flushAll();
    this.input.onSegmentRead?.(tally.segment);
    this.transactions += tally.transactions;
    this.changes += tally.changes;
    const { segment, last } = tally;
    if (!last) return;
    const log = (): void =>
      this.input.log.info(
        { event: 'segment_applied', segment: segment.name, transactions: tally.transactions, lastCommitLsn: last.commitLsn },
        'segment applied',
      );
    if (tally.serial) {
      const done = deferred();
      done.promise.then(log, () => undefined);
      (this.lanes[0] as ApplyLane).push({ kind: 'commit', segment, progress: { last, transactions: tally.transactions, changes: tally.changes }, done });
      return;
    }
    const commits = this.lanes.map((lane) => {
      const done = deferred();
      lane.push({ kind: 'commit', segment, tablesUpTo: last.commitLsn, done });
      return done.promise;
    });
    const previous = this.progress;
    this.progress = (async () => {
      await previous;
      await Promise.all(commits);
      await recordProgress(this.input.client, last, tally.transactions, tally.changes);
      log();
    })();
    this.progress.catch(() => undefined); // surfaces at the next barrier
  }

  /** One archived message, `data[start, end)`: only Relation, Begin, Commit, Truncate and Message are decoded. */
  private record(data: Buffer, start: number, end: number): void {
    const tag = data[start];
    switch (tag) {
      case Tag.Relation: {
        const message = decodePgoutput(data.subarray(start, end)) as RelationMessage;
        this.router.flush(message.relationId);
        this.relations.set(message.relationId, replayRelation(message, this.input.tables, this.keyOnlyUnique));
        return;
      }
      case Tag.Begin: {
        if (this.stopped) return;
        const begin = decodePgoutput(data.subarray(start, end)) as BeginMessage;
        this.transaction = { commitLsn: begin.finalLsn, commitTime: begin.commitTime, xid: begin.xid };
        if (!this.input.plan.stop.includes(begin.finalLsn, begin.commitTime)) {
          this.stopped = true;
          this.applying = false;
          return;
        }
        const resumeAfter = this.input.resumeAfter;
        this.applying = begin.finalLsn >= this.aligned && (resumeAfter === undefined || begin.finalLsn > resumeAfter);
        return;
      }
      case Tag.Commit: {
        decodePgoutput(data.subarray(start, end));
        const tally = this.tally as SegmentTally;
        if (this.applying && this.transaction) {
          tally.transactions++;
          tally.last = {
            commitLsn: formatLsn(this.transaction.commitLsn),
            commitTime: formatUnixMicros(this.transaction.commitTime),
            xid: this.transaction.xid,
          };
        }
        this.applying = false;
        return;
      }
      case Tag.Insert:
      case Tag.Update:
      case Tag.Delete:
        if (this.applying) this.rowChange(data, start, end);
        return;
      case Tag.Truncate:
        if (this.applying) this.truncate(decodePgoutput(data.subarray(start, end)) as TruncateMessage);
        return;
      case Tag.Message:
        if (this.applying) this.logicalMessage(decodePgoutput(data.subarray(start, end)) as LogicalMessage);
        return;
      case Tag.Origin:
      case Tag.Type:
        return;
      default:
        decodePgoutput(data.subarray(start, end)); // names what the record is
        throw new PitrError('Integrity', `unexpected record in segment ${this.tally?.segment.name ?? ''}`);
    }
  }

  private relation(id: number): ReplayRelation {
    const relation = this.relations.get(id);
    if (!relation) throw new PitrError('Integrity', `change for relation ${id} without its relation message`, 'the archived change data is corrupt');
    return relation;
  }

  private rowChange(data: Buffer, start: number, end: number): void {
    const change = this.change.read(data, start, end);
    const relation = this.relation(change.relationId);
    if (!relation.wanted) return;
    (this.tally as SegmentTally).changes++;
    const applied = this.tableProgress.get(change.relationId);
    if (applied !== undefined && (this.transaction as { commitLsn: Lsn }).commitLsn <= applied) return; // committed before an interruption
    const lane = this.laneFor(change.relationId);
    lane.load += end - start;
    if (relation.rowByRow && change.tag !== Tag.Insert) {
      this.router.flush(change.relationId);
      const message = decodePgoutput(data.subarray(start, end)) as UpdateMessage | DeleteMessage;
      this.push(lane, { kind: 'row', relation, message });
      return;
    }
    this.router.add(change, relation);
  }

  private truncate(message: TruncateMessage): void {
    const relations = message.relationIds.map((id) => this.relation(id)).filter((r) => r.wanted);
    if (relations.length === 0) return;
    this.requireSerial('TRUNCATE');
    (this.tally as SegmentTally).changes++;
    this.router.flushAll();
    this.push(this.lanes[0] as ApplyLane, { kind: 'truncate', relations, cascade: message.cascade, restartIdentity: message.restartIdentity });
  }

  private logicalMessage(message: LogicalMessage): void {
    if (message.prefix === MessagePrefix.Ddl) {
      this.requireSerial('DDL statement');
      (this.tally as SegmentTally).changes++;
      this.router.flushAll();
      this.afterDdl = true;
      this.push(this.lanes[0] as ApplyLane, { kind: 'ddl', content: message.content });
    } else if (message.prefix === MessagePrefix.Heartbeat) {
      this.sequences = (JSON.parse(message.content.toString('utf8')) as { sequences: HeartbeatSequences }).sequences;
    }
  }

  private requireSerial(what: string): void {
    const tally = this.tally as SegmentTally;
    if (!tally.serial)
      throw new PitrError('Integrity', `segment ${tally.segment.name} holds a ${what} its manifest does not count`, 'run "pitr verify --deep"');
  }

  private handOn(batch: TableBatch): void {
    this.push(this.laneFor(batch.relation.message.relationId), { kind: 'batch', batch });
  }

  private push(lane: ApplyLane, job: DistributiveOmit<LaneJob, 'segment'>): void {
    lane.push({ ...job, segment: (this.tally as SegmentTally).segment } as LaneJob);
  }

  /** Serial segments use the first lane; otherwise a table keeps the lane it was first given, the least loaded then. */
  private laneFor(relationId: number): ApplyLane {
    if ((this.tally as SegmentTally).serial) return this.lanes[0] as ApplyLane;
    let lane = this.laneOf.get(relationId);
    if (!lane) {
      lane = this.lanes.reduce((a, b) => (b.load < a.load ? b : a));
      this.laneOf.set(relationId, lane);
    }
    return lane;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function deferred(): { promise: Promise<void>; resolve(): void; reject(error: unknown): void } {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a lane's failure is reported through the lane, not through every waiter
  return { promise, resolve, reject };
}
