import { parseDdlRecord, type DdlRecord } from '../archive/ddl-record';
import {
  decodePgoutput,
  type BeginMessage,
  type DeleteMessage,
  type LogicalMessage,
  type RelationMessage,
  type TruncateMessage,
  type UpdateMessage,
} from '../archive/pgoutput-decoder';
import type { Repository } from '../archive/repository';
import { MessagePrefix, Tag } from '../archive/segment-format';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { readSegmentFrames, type RecordFrame } from '../archive/segment-reader';
import { PITR_SCHEMA } from '../capture/in-band-sql';
import { PitrError, isPitrError } from '../errors';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import type { ApplyLane, LaneFailure, LaneJob } from './apply-lane';
import { BatchRouter, MAX_PARTS } from './batch-router';
import { ddlAction } from '../archive/ddl-action';
import { positionText, type ChangePosition } from './ddl-replay';
import { deferred } from './deferred';
import { throwIfInterrupted } from './interrupted';
import { RawChange, ValueKind, type RawTuple } from './raw-change';
import { readAhead } from './read-ahead';
import { RecordSpool } from './record-spool';
import type { HeartbeatSequences, ReplayInput, ReplayResult } from './replay-input';
import { FIXED_WIDTH_TYPE_NAMES, replayRelation, type ReplayRelation } from './replay-relation';
import { quoteIdent } from '../pg/sql-quote';
import { RESTORE_MOVES, deleteMovedRow, forgetMovedValues, readMovedValues, recordProgress, type AppliedCommit, type PartProgress } from './restore-state';
import { explainSegmentFailure } from './segment-failure';
import { TableBatch, rowKey } from './table-batch';
import { TargetCatalog, type TargetTable } from './target-catalog';

const READ_AHEAD_FRAMES = 4;
const YIELD_EVERY = 256;
const yieldToLanes = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const LANE_QUEUE_BYTES = 8 * 1024 * 1024;
/**
 * Small parallel segments commit together, in one transaction per lane, until the group holds
 * GROUP_CHANGES changes, GROUP_SEGMENTS segments or GROUP_MS of work: an idle source's archive is mostly
 * one-heartbeat segments, and a commit (and progress record) for each would cost more than applying
 * them. A segment of GROUP_CHANGES changes or more still commits on its own. A resumed restore
 * continues after the last group committed.
 */
const GROUP_SEGMENTS = 1000;
const GROUP_CHANGES = 1000;
const GROUP_MS = 1000;
/** Keys moved between parts whose old rows one statement deletes, and whose new rows one insert holds (see SegmentReplay.splitChange). */
const MOVES_PER_STATEMENT = 1000;

type Item = { kind: 'start' | 'end'; segment: SegmentManifest } | { kind: 'records'; segment: SegmentManifest; frame: RecordFrame };

async function* segmentItems(repo: Repository, segments: readonly SegmentManifest[]): AsyncGenerator<Item> {
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

/**
 * What a run of one segment's transactions contributed since its last commit point: a run is serial
 * (every change on the first lane) or parallel, and a segment holding schema changes or TRUNCATE
 * switches between the two at the transactions that hold them.
 */
interface SegmentTally {
  segment: SegmentManifest;
  serial: boolean;
  transactions: number;
  changes: number;
  /** Kept as numbers: formatted only at a commit point (a segment can hold tens of thousands of commits). */
  last: OpenTransaction | undefined;
}

/** Parallel segments applied since the lanes last committed (see GROUP_SEGMENTS). */
interface CommitGroup {
  segment: SegmentManifest;
  last: OpenTransaction;
  transactions: number;
  changes: number;
  segments: number;
  startedAt: number;
}

interface OpenTransaction {
  commitLsn: Lsn;
  commitTime: bigint;
  xid: number;
  /** A schema change was applied in it: commit right after it (PostgreSQL requires it after ALTER TYPE … ADD VALUE). */
  ddl: boolean;
  /** Per split table, the updates so far that moved a key to another part (numbers them, for pitr.restore_moves). */
  moves: Map<number, number> | undefined;
}

/** Gathered moves of one table, old part and set of unchanged columns (SegmentReplay.splitChange). */
interface MoveList {
  relation: ReplayRelation;
  part: number;
  parts: number;
  unchanged: number[];
  moves: { keys: string[]; seq: number; commitLsn: string; newRow: Buffer; moving: number }[];
}

/** How a table is split among the lanes (SegmentReplay.splitChange). */
interface Split {
  parts: number;
  /** Part → the last commit applied to it before an interruption. */
  applied: Map<number, Lsn>;
  /** The newest of those (0 for none): changes committed after it are applied whole, however the run goes. */
  newest: Lsn;
}

/** Where replay starts: the target's catalog and the routes of the relations already known. */
export interface ReplayStart {
  catalog: TargetCatalog;
  /** Source relation id → target table OID. */
  routes: Map<number, number>;
  /** Source relation id → whether `--tables` restores it (for the backup's tables). */
  wanted: Map<number, boolean>;
  /** Source relation id → last commit LSN applied to that table (X/Y), for a resumed parallel replay. */
  tableProgress: Map<number, string>;
  /** Source relation id → how it was split and each part's last commit, for a resumed parallel replay. */
  partProgress: Map<number, PartProgress>;
}

/**
 * The segment loop of a replay (see replay.ts for the terminology): reads the segments ahead, routes
 * each archived message, hands batches and barriers to the lanes and records progress.
 *
 * Routing: a source relation id names a table for the whole archive (a Relation message can carry a
 * schema's old name: PostgreSQL does not resend it after ALTER SCHEMA … RENAME). It routes to a target
 * table OID, found by name the first time and kept (in pitr.restore_relations) so that renames on the
 * target follow. After every schema change the catalog is read again through the lane that applied it.
 * Rows of a table the target does not have yet are held (RecordSpool) until a schema change of the same
 * transaction creates it (the rows of CREATE TABLE AS come before its record).
 */
export class SegmentReplay {
  private readonly aligned: Lsn;
  private readonly relations = new Map<number, ReplayRelation>();
  private readonly laneOf = new Map<number, ApplyLane>();
  private readonly change = new RawChange();
  private readonly router: BatchRouter;
  private readonly tableProgress: Map<number, Lsn>;
  /** Split tables: source relation id → parts, and the last commit applied to each part before an interruption. */
  private readonly parts = new Map<number, Split>();
  /** Keys moved between parts with values read back since the replay started (pitr.restore_moves is emptied at its end). */
  private anyMoves = false;
  /**
   * Moves between parts whose new row waits for the old row's values: the old part's lane reads them
   * and queues the insert on the new part's lane itself. Settled before any commit is queued, and
   * before a later change to one of the new keys (pendingKeys) is routed.
   */
  private pendingMoves: Promise<void>[] = [];
  private readonly pendingKeys = new Map<number, Set<string | number>>();
  /** The inserts those moves made, gathered per table and new part; queued when the moves are settled (or a batch is full). */
  private readonly moveLists = new Map<string, MoveList>();
  private readonly movedRows = new Map<string, { batch: TableBatch; lane: ApplyLane; parts: number; segment: SegmentManifest }>();
  /** Scratch for the delete and insert a key moved between parts becomes. */
  private readonly moved = new RawChange();
  private catalog: TargetCatalog;
  private readonly routes: Map<number, number>;
  private readonly wanted: Map<number, boolean>;
  /** Routes made since lane 0 last committed: recorded with its next commit. */
  private newRoutes: [number, number][] = [];
  private readonly held = new RecordSpool();
  /** Inside an extension's script (between its marker and the extension command's record): its rows are made again by the command. */
  private extensionScript = 0;
  private tally: SegmentTally | undefined;
  /** The segment holds schema changes or TRUNCATE, and there are several lanes: each transaction is judged on its own. */
  private mixed = false;
  private group: CommitGroup | undefined;
  private transaction: OpenTransaction | undefined;
  private applying = false;
  /** A key moved between parts with values read back (pitr.restore_moves) since the last commit group. */
  private movesInGroup = false;
  private stopped = false;
  private progress: Promise<void> = Promise.resolve();
  private transactions = 0;
  private changes = 0;
  private sequences: HeartbeatSequences | undefined;
  /** The first heartbeat after the target (read past it, never applied). */
  private sequencesAfter: HeartbeatSequences | undefined;

  constructor(
    private readonly input: ReplayInput,
    private readonly lanes: ApplyLane[],
    start: ReplayStart,
  ) {
    this.aligned = parseLsn(input.plan.backup.alignedLsn);
    this.router = new BatchRouter(
      (batch) => this.handOn(batch),
      (relation) => relation.reorderable,
    );
    this.catalog = start.catalog;
    this.routes = start.routes;
    this.wanted = start.wanted;
    this.tableProgress = new Map([...start.tableProgress].map(([id, lsn]) => [id, parseLsn(lsn)]));
    for (const [id, p] of start.partProgress) {
      const applied = new Map([...p.lastCommitLsn].map(([part, lsn]) => [part, parseLsn(lsn)]));
      this.parts.set(id, { parts: p.parts, applied, newest: [...applied.values()].reduce((a, b) => (b > a ? b : a), 0n) });
    }
  }

  /** Applies `segments`; then reads on, in `lookAhead`, to the first heartbeat after the target. */
  async run(segments: readonly SegmentManifest[], lookAhead: readonly SegmentManifest[] = []): Promise<ReplayResult> {
    const items = readAhead(segmentItems(this.input.repo, [...segments, ...lookAhead]), READ_AHEAD_FRAMES);
    try {
      for await (const item of items) {
        throwIfInterrupted(this.input.signal, 'during replay');
        this.throwIfLaneFailed();
        if (item.kind === 'start') await this.startSegment(item.segment);
        else if (item.kind === 'records') {
          const { frame } = item;
          const { data, starts, ends, count } = frame;
          for (let i = 0; i < count; i++) {
            const start = starts[i] as number;
            const waiting = this.record(data, start, ends[i] as number);
            if (waiting) await waiting;
            if (this.mixed && this.applying && data[start] === Tag.Begin) {
              const serial = holdsSerialWork(frame, i) !== false;
              if (serial !== (this.tally as SegmentTally).serial) await this.switchRun(serial);
            }
            // let the lanes hear their answers and send their next statements
            if (i % YIELD_EVERY === YIELD_EVERY - 1) await yieldToLanes();
          }
          for (const lane of this.lanes) await lane.room(LANE_QUEUE_BYTES);
          throwIfInterrupted(this.input.signal, 'during replay');
          this.throwIfLaneFailed();
        } else {
          await this.settleMoves();
          this.endSegment();
          if (this.stopped && this.sequencesAfter !== undefined) break;
        }
      }
      await this.settleMoves();
      this.commitGroup();
      await this.barrier();
      if (this.anyMoves) await forgetMovedValues(this.input.client, formatLsn(0xffffffffffffffffn));
      return { transactions: this.transactions, changes: this.changes, sequences: this.sequences, sequencesAfter: this.sequencesAfter };
    } catch (error) {
      const failure = error instanceof LaneFailed ? error.failure : this.lanes.find((l) => l.failure)?.failure;
      await Promise.all(this.lanes.map((lane) => lane.settle()));
      await this.progress.catch(() => undefined); // the groups the lanes all committed are recorded
      if (!failure && isPitrError(error, 'Interrupted')) throw error;
      const segment = failure?.segment ?? this.tally?.segment;
      const cause = failure ? failure.error : error;
      throw segment ? await explainSegmentFailure(this.input.repo, segment, cause) : cause;
    } finally {
      this.held.clear();
      await items.return(undefined);
    }
  }

  private throwIfLaneFailed(): void {
    for (const lane of this.lanes) if (lane.failure) throw new LaneFailed(lane.failure);
  }

  private get firstLane(): ApplyLane {
    return this.lanes[0] as ApplyLane;
  }

  /** Waits until every lane has run everything queued and the progress of parallel segments is recorded. */
  private async barrier(): Promise<void> {
    for (const lane of this.lanes) await lane.idle();
    throwIfInterrupted(this.input.signal, 'during replay');
    this.throwIfLaneFailed();
    await this.progress;
  }

  /**
   * A segment without schema changes and TRUNCATE runs parallel (on one lane, serial); one holding them
   * starts parallel too, and each of its transactions that holds one runs serial (switchRun).
   */
  private async startSegment(segment: SegmentManifest): Promise<void> {
    const several = this.lanes.length > 1;
    this.mixed = several && (segment.ddl !== 0 || segment.changes?.truncate !== 0);
    if (several && this.tally?.serial) await this.barrier(); // the serial run before committed at its segment's end
    this.tally = { segment, serial: !several, transactions: 0, changes: 0, last: undefined };
  }

  /**
   * Between two transactions of a segment: ends the current run (a serial one commits on the first lane,
   * a parallel one commits its group) and waits for every lane, since DDL and TRUNCATE take locks the
   * other lanes' open transactions could hold and a parallel run must see what the serial one did.
   */
  private async switchRun(serial: boolean): Promise<void> {
    await this.settleMoves();
    const tally = this.tally as SegmentTally;
    this.router.flushAll();
    this.endRun(tally, true);
    await this.barrier();
    this.tally = { segment: tally.segment, serial, transactions: 0, changes: 0, last: undefined };
  }

  private endSegment(): void {
    const tally = this.tally as SegmentTally;
    this.router.flushAll();
    if (!this.stopped || tally.last) this.input.onSegmentRead?.(tally.segment);
    this.endRun(tally, false);
  }

  /** A run's commit point: a serial run commits now; a parallel one joins the group, committed now when `now` or when the group is full. */
  private endRun(tally: SegmentTally, now: boolean): void {
    const { segment } = tally;
    if (tally.last && tally.serial) {
      const last = appliedCommit(tally.last);
      const log = (): void => this.input.log.info({ event: 'segment_applied', segment: segment.name, lastCommitLsn: last.commitLsn }, 'segment applied');
      this.commitPoint().then(log, () => undefined);
      return;
    }
    if (tally.last) this.joinGroup(tally, tally.last);
    const group = this.group;
    if (group && (now || group.segments >= GROUP_SEGMENTS || group.changes >= GROUP_CHANGES || Date.now() - group.startedAt >= GROUP_MS)) this.commitGroup();
  }

  /** Adds a parallel run's transactions to the open commit group (opened by it when there is none). */
  private joinGroup(tally: SegmentTally, last: OpenTransaction): void {
    const { segment } = tally;
    const group = this.group ?? { segment, last, transactions: 0, changes: 0, segments: 0, startedAt: Date.now() };
    this.group = group;
    group.segment = segment;
    group.last = last;
    group.transactions += tally.transactions;
    group.changes += tally.changes;
    group.segments++;
  }

  /** Commits the parallel segments applied since the last commit, then records the restore's progress. */
  private commitGroup(): void {
    const group = this.group;
    if (!group) return;
    this.group = undefined;
    const { segment } = group;
    const last = appliedCommit(group.last);
    const routes = this.takeRoutes();
    const moved = this.movesInGroup;
    this.movesInGroup = false;
    const commits = this.lanes.map((lane, i) => {
      const done = deferred();
      lane.push({ kind: 'commit', segment, tablesUpTo: last.commitLsn, routes: i === 0 ? routes : [], done });
      return done.promise;
    });
    const previous = this.progress;
    this.progress = (async () => {
      await previous;
      await Promise.all(commits);
      await recordProgress(this.input.client, last, group.transactions, group.changes);
      if (moved) await forgetMovedValues(this.input.client, last.commitLsn);
      this.input.log.info({ event: 'segment_applied', segment: segment.name, lastCommitLsn: last.commitLsn, segments: group.segments }, 'segments applied');
    })();
    this.progress.catch(() => undefined); // surfaces at the next barrier
  }

  /** Serial segments: commit what the first lane applied so far, with the restore's progress (a resume continues after it). */
  private commitPoint(): Promise<void> {
    const tally = this.tally as SegmentTally;
    const done = deferred();
    const last = appliedCommit(tally.last as OpenTransaction);
    this.firstLane.push({
      kind: 'commit',
      segment: tally.segment,
      progress: { last, transactions: tally.transactions, changes: tally.changes },
      routes: this.takeRoutes(),
      done,
    });
    tally.transactions = 0;
    tally.changes = 0;
    return done.promise;
  }

  private takeRoutes(): [number, number][] {
    const routes = this.newRoutes;
    this.newRoutes = [];
    return routes;
  }

  /**
   * One archived message, `data[start, end)`: only Relation, Begin, Commit, Truncate and Message are
   * decoded. Returns a promise only when the message must be applied before the next is read (DDL).
   */
  private record(data: Buffer, start: number, end: number): Promise<void> | undefined {
    const tag = data[start];
    switch (tag) {
      case Tag.Relation:
        this.relationMessage(decodePgoutput(data.subarray(start, end)) as RelationMessage);
        return undefined;
      case Tag.Begin: {
        if (this.stopped) return undefined;
        const begin = decodePgoutput(data.subarray(start, end)) as BeginMessage;
        this.transaction = { commitLsn: begin.finalLsn, commitTime: begin.commitTime, xid: begin.xid, ddl: false, moves: undefined };
        this.extensionScript = 0;
        if (!this.input.plan.stop.includes(begin.finalLsn, begin.commitTime)) {
          this.stopped = true;
          this.applying = false;
          return undefined;
        }
        const resumeAfter = this.input.resumeAfter;
        this.applying = begin.finalLsn >= this.aligned && (resumeAfter === undefined || begin.finalLsn > resumeAfter);
        return undefined;
      }
      case Tag.Commit:
        decodePgoutput(data.subarray(start, end));
        if (this.applying && this.transaction) this.committed(this.transaction);
        this.applying = false;
        return undefined;
      case Tag.Insert:
      case Tag.Update:
      case Tag.Delete:
        return this.applying ? this.rowChange(data, start, end) : undefined;
      case Tag.Truncate:
        if (this.applying) this.truncate(decodePgoutput(data.subarray(start, end)) as TruncateMessage, data, start, end);
        return undefined;
      case Tag.Message:
        if (this.applying) return this.logicalMessage(decodePgoutput(data.subarray(start, end)) as LogicalMessage);
        if (this.stopped && this.sequencesAfter === undefined) {
          const message = decodePgoutput(data.subarray(start, end)) as LogicalMessage;
          if (message.prefix === MessagePrefix.Heartbeat) this.sequencesAfter = heartbeatSequences(message);
        }
        return undefined;
      case Tag.Origin:
      case Tag.Type:
        return undefined;
      default:
        decodePgoutput(data.subarray(start, end)); // names what the record is
        throw new PitrError('Integrity', `unexpected record in segment ${this.tally?.segment.name ?? ''}`);
    }
  }

  private committed(transaction: OpenTransaction): void {
    if (this.held.count > 0) throw this.heldRowsError(transaction);
    const tally = this.tally as SegmentTally;
    tally.transactions++;
    this.transactions++;
    tally.last = transaction;
    if (transaction.ddl && tally.serial) void this.commitPoint().catch(() => undefined);
  }

  private position(): ChangePosition {
    return appliedCommit(this.transaction as OpenTransaction);
  }

  private heldRowsError(transaction: OpenTransaction): PitrError {
    const ids = new Set<number>();
    for (const [id, relation] of this.relations) if (relation.wanted && !relation.target) ids.add(id);
    const names = [...ids].map((id) => this.relations.get(id)?.name ?? String(id)).join(', ');
    this.held.clear();
    return new PitrError(
      'Replay',
      `cannot replay the transaction committed at ${formatLsn(transaction.commitLsn)} (${formatUnixMicros(transaction.commitTime)}, xid ${transaction.xid}): it changes ${names}, which the target database does not have and no schema change of the transaction creates`,
      `restore to a point before it (--to lsn:${formatLsn(transaction.commitLsn)} --exclusive); "pitr log --xid ${transaction.xid}" shows the transaction`,
    );
  }

  private relationMessage(message: RelationMessage): void {
    const id = message.relationId;
    this.router.flush(id);
    let wanted = this.wanted.get(id);
    if (wanted === undefined) {
      // pitr's own bookkeeping on the source is never part of the database
      wanted = message.namespace !== PITR_SCHEMA && (!this.input.tables || this.input.tables.has(`${message.namespace}.${message.name}`));
      this.wanted.set(id, wanted);
    }
    this.relations.set(id, replayRelation(message, wanted ? this.targetOf(id, message) : undefined, wanted));
  }

  /** The target table a relation id routes to: by its recorded route, else by name (then recorded). */
  private targetOf(id: number, message: RelationMessage): TargetTable | undefined {
    const routed = this.routes.get(id);
    if (routed !== undefined) {
      const table = this.catalog.byOid(routed);
      if (table) return table;
      this.routes.delete(id); // dropped on the target by a replayed schema change
    }
    const table = this.catalog.byName(message.namespace, message.name);
    if (table) {
      this.routes.set(id, table.oid);
      this.newRoutes.push([id, table.oid]);
    }
    return table;
  }

  private relation(id: number): ReplayRelation {
    const relation = this.relations.get(id);
    if (!relation) throw new PitrError('Integrity', `change for relation ${id} without its relation message`, 'the archived change data is corrupt');
    return relation;
  }

  /** Returns a promise only when a change must wait for a value read from the target first (splitChange). */
  private rowChange(data: Buffer, start: number, end: number): Promise<void> | undefined {
    const change = this.change.read(data, start, end);
    if (this.extensionScript > 0) return; // the replayed extension command makes the script's rows again
    const relation = this.relation(change.relationId);
    if (!relation.wanted) return;
    if (!relation.target) {
      this.held.add(data, start, end);
      return;
    }
    (this.tally as SegmentTally).changes++;
    this.changes++;
    const applied = this.tableProgress.get(change.relationId);
    const commitLsn = (this.transaction as OpenTransaction).commitLsn;
    if (applied !== undefined && commitLsn <= applied) return; // committed before an interruption
    if (relation.splittable) {
      // split among the lanes; or, for what an interrupted replay may have applied in part (a resumed
      // run with one lane, or a serial run), judged by part as it was applied
      const parallel = this.lanes.length > 1 && !(this.tally as SegmentTally).serial;
      const recorded = this.parts.get(change.relationId);
      if (parallel || (recorded && commitLsn <= recorded.newest)) return this.splitChange(change, relation, data, start, end);
    }
    const lane = this.laneFor(change.relationId);
    lane.load += end - start;
    if (change.tag !== Tag.Insert && (relation.rowByRow || keyNotCarried(change, relation))) {
      this.router.flush(change.relationId);
      const message = decodePgoutput(data.subarray(start, end)) as UpdateMessage | DeleteMessage;
      this.push(lane, { kind: 'row', relation, message });
      return;
    }
    this.router.add(change, relation);
  }

  /**
   * A change to a split table goes to the part its key hashes to (each part on its lane, in source
   * order per key, like a table of its own). An update moving a row's key to another part becomes a
   * delete in the old part and an insert of the whole new row in the new one: each key stays with one
   * connection, so no connection ever waits on another's rows. Values the update left unchanged
   * (TOASTed, not sent) are read first from the old row, through its part's connection.
   */
  private splitChange(change: RawChange, relation: ReplayRelation, data: Buffer, start: number, end: number): Promise<void> | undefined {
    const id = change.relationId;
    const split = this.splitOf(id);
    const keyTuple = change.tag === Tag.Insert ? change.next : change.hasOld ? change.old : change.next;
    const key = rowKey(keyTuple, relation.keyIndexes);
    const newKey = change.tag === Tag.Update && change.hasOld ? rowKey(change.next, relation.keyIndexes, change.old) : key;
    const pending = this.pendingKeys.get(id);
    if (pending && (pending.has(key) || pending.has(newKey))) return this.settleMoves().then(() => this.splitChange(change, relation, data, start, end));
    const part = partOfKey(key, split.parts);
    const commitLsn = (this.transaction as OpenTransaction).commitLsn;
    const applied = split.applied.get(part);
    const moving = newKey === key ? part : partOfKey(newKey, split.parts);
    if (moving === part) {
      if (applied !== undefined && commitLsn <= applied) return undefined;
      this.laneOfPart(part).load += end - start;
      this.router.add(change, relation, part);
      return undefined;
    }
    // numbered before anything is skipped, so that a resumed replay numbers them alike
    const transaction = this.transaction as OpenTransaction;
    transaction.moves ??= new Map();
    const seq = transaction.moves.get(id) ?? 0;
    transaction.moves.set(id, seq + 1);
    const appliedThere = split.applied.get(moving);
    const deleteDone = applied !== undefined && commitLsn <= applied;
    const insertDone = appliedThere !== undefined && commitLsn <= appliedThere;
    if (deleteDone && insertDone) return undefined;
    const unchanged: number[] = [];
    for (let i = 0; i < change.next.count; i++) if (change.next.kinds[i] === ValueKind.Unchanged) unchanged.push(i);
    const insert = (values?: readonly (string | null)[]): void => {
      this.router.add(this.moved.read(insertMessage(id, change.next, unchanged, values)), relation, moving);
      this.laneOfPart(moving).load += end - start;
    };
    if (unchanged.length === 0 || insertDone) {
      if (!deleteDone) {
        this.router.add(this.moved.read(deleteMessage(id, change, data)), relation, part);
        this.laneOfPart(part).load += end - start;
      }
      if (!insertDone) insert();
      return undefined;
    }
    // The new row needs values the update left unchanged: the old part's connection deletes the old
    // row, once it applied what came before, returning them, and keeps them with its share of the
    // group (pitr.restore_moves), so that a replay interrupted after that share committed, and before
    // the new part's did, still has them.
    this.movesInGroup = true;
    this.anyMoves = true;
    if (deleteDone)
      return readMovedValues(this.input.client, id, formatLsn(commitLsn), seq).then((values) => {
        if (values) insert(values);
      });
    const names = relation.message.columns.map((c) => quoteIdent(c.name));
    const keys = relation.keyIndexes.map((i) => keyTuple.buf.toString('utf8', keyTuple.starts[i], keyTuple.ends[i]));
    const match = relation.keyIndexes.map(
      (i, j) => `${names[i] as string} = $${j + 1}::pg_catalog.${FIXED_WIDTH_TYPE_NAMES.get(relation.message.columns[i]?.typeOid ?? 0) as string}`,
    );
    const sql = `DELETE FROM ${relation.sql} WHERE ${match.join(' AND ')} RETURNING ${unchanged.map((i, u) => `${names[i] as string}::text AS c${u}`).join(', ')}`;
    if ((this.tally as SegmentTally).serial) {
      // one lane: wait for the values, then route the insert like any change
      this.router.flush(id);
      let values: (string | null)[] | undefined;
      const done = deferred();
      this.push(this.firstLane, {
        kind: 'call',
        run: async (client) => {
          values = await deleteMovedRow(client, sql, keys, unchanged.length, { relationId: id, commitLsn: formatLsn(commitLsn), seq });
        },
        done,
      });
      return done.promise.then(() => {
        if (values) insert(values);
      });
    }
    // Parallel: no waiting. The old part's earlier changes of this key, and the new part's of the new
    // key, go first. Moves are gathered per table, old part and set of unchanged columns; the old
    // part's lane deletes a gathered list's rows in one statement, keeps their values, and gathers
    // the new rows for the new parts' lanes. A later change to an old or new key of a gathered move
    // waits for all that (pendingKeys), and so does every commit.
    if (this.router.touches(id, part, key)) this.router.flushPart(id, part);
    if (this.router.touches(id, moving, newKey)) this.router.flushPart(id, moving);
    this.laneOfPart(moving).load += end - start;
    const slot = `${id}/${part}/${unchanged.join(',')}`;
    let list = this.moveLists.get(slot);
    if (list && list.relation !== relation) this.queueMoveList(slot);
    list = this.moveLists.get(slot);
    if (!list) {
      list = { relation, part, parts: split.parts, unchanged, moves: [] };
      this.moveLists.set(slot, list);
    }
    list.moves.push({
      keys: relation.keyIndexes.map((i) => keyTuple.buf.toString('utf8', keyTuple.starts[i], keyTuple.ends[i])),
      seq,
      commitLsn: formatLsn(commitLsn),
      newRow: insertMessage(id, change.next, [], undefined), // 'u' kept: filled once read
      moving,
    });
    let keysMoved = this.pendingKeys.get(id);
    if (!keysMoved) this.pendingKeys.set(id, (keysMoved = new Set()));
    keysMoved.add(key);
    keysMoved.add(newKey);
    if (list.moves.length >= MOVES_PER_STATEMENT) this.queueMoveList(slot);
    return undefined;
  }

  /** Queues the delete of a gathered list of moves on its old part's lane (see splitChange). */
  private queueMoveList(slot: string): void {
    const list = this.moveLists.get(slot);
    if (!list) return;
    this.moveLists.delete(slot);
    const { relation, part, parts, unchanged, moves } = list;
    const id = relation.message.relationId;
    const names = relation.message.columns.map((c) => quoteIdent(c.name));
    const k = relation.keyIndexes.length;
    const keyAliases = relation.keyIndexes.map((_, j) => `k${j}`);
    const match = relation.keyIndexes.map(
      (i, j) => `t.${names[i] as string} = v.k${j}::pg_catalog.${FIXED_WIDTH_TYPE_NAMES.get(relation.message.columns[i]?.typeOid ?? 0) as string}`,
    );
    const returned = unchanged.map((i, u) => `t.${names[i] as string}::text AS c${u}`);
    const sql = `WITH v AS (SELECT * FROM unnest(${keyAliases.map((_, j) => `$${j + 1}::text[]`).join(', ')}, $${k + 1}::int[], $${k + 2}::text[]) AS v(${keyAliases.join(', ')}, seq, lsn)),
      moved AS (DELETE FROM ${relation.sql} AS t USING v WHERE ${match.join(' AND ')} RETURNING v.seq, v.lsn, ${returned.join(', ')}),
      kept AS (INSERT INTO ${RESTORE_MOVES} (relation_id, commit_lsn, seq, vals) SELECT $${k + 3}, lsn::pg_lsn, seq, ARRAY[${unchanged.map((_, u) => `c${u}`).join(', ')}]::text[] FROM moved)
      SELECT * FROM moved`;
    const params = [...relation.keyIndexes.map((_, j) => moves.map((m) => m.keys[j])), moves.map((m) => m.seq), moves.map((m) => m.commitLsn), id];
    const segment = (this.tally as SegmentTally).segment;
    const done = deferred();
    this.push(this.laneOfPart(part), {
      kind: 'call',
      touches: { relationId: id, part, parts },
      run: async (client) => {
        const { rows } = await client.query<Record<string, string | number | null>>(sql, params);
        const found = new Map(rows.map((r) => [`${String(r.lsn)}/${String(r.seq)}`, r]));
        for (const move of moves) {
          const row = found.get(`${move.commitLsn}/${move.seq}`);
          if (!row) continue; // no old row: the update changed nothing there either
          const values = unchanged.map((_, u) => (row[`c${u}`] ?? null) as string | null);
          const next = new RawChange().read(move.newRow).next;
          const rows = `${id}/${move.moving}`;
          let gathered = this.movedRows.get(rows);
          if (gathered && gathered.batch.relation !== relation) this.queueMovedRows(rows);
          gathered = this.movedRows.get(rows);
          if (!gathered) {
            gathered = { batch: new TableBatch(0, 'insert', relation, [], move.moving), lane: this.laneOfPart(move.moving), parts, segment };
            this.movedRows.set(rows, gathered);
          }
          gathered.batch.addInsert(new RawChange().read(insertMessage(id, next, unchanged, values)).next);
          if (gathered.batch.rows >= MOVES_PER_STATEMENT) this.queueMovedRows(rows);
        }
      },
      done,
    });
    done.promise.catch(() => undefined); // a failure surfaces where the moves are settled
    this.pendingMoves.push(done.promise);
  }

  /** Waits until every gathered move has queued its insert (before a commit is queued, or a change to a moved key routed). */
  private async settleMoves(): Promise<void> {
    for (const slot of [...this.moveLists.keys()]) this.queueMoveList(slot);
    if (this.pendingMoves.length === 0) return;
    const moves = this.pendingMoves;
    this.pendingMoves = [];
    await Promise.all(moves);
    for (const slot of [...this.movedRows.keys()]) this.queueMovedRows(slot);
    this.pendingKeys.clear();
  }

  private queueMovedRows(slot: string): void {
    const gathered = this.movedRows.get(slot);
    if (!gathered) return;
    this.movedRows.delete(slot);
    gathered.lane.push({ kind: 'batch', batch: gathered.batch, parts: gathered.parts, segment: gathered.segment });
  }

  /** How a table is split: as recorded by an interrupted replay, else into one part per lane (at most MAX_PARTS). */
  private splitOf(relationId: number): Split {
    let split = this.parts.get(relationId);
    if (!split) {
      split = { parts: Math.min(this.lanes.length, MAX_PARTS), applied: new Map(), newest: 0n };
      this.parts.set(relationId, split);
    }
    return split;
  }

  /** A part's lane; in a serial run, the first, like every change. */
  private laneOfPart(part: number): ApplyLane {
    if ((this.tally as SegmentTally).serial) return this.firstLane;
    return this.lanes[part % this.lanes.length] as ApplyLane;
  }

  private truncate(message: TruncateMessage, data: Buffer, start: number, end: number): void {
    if (this.extensionScript > 0) return;
    const relations = message.relationIds.map((id) => this.relation(id)).filter((r) => r.wanted);
    if (relations.length === 0) return;
    if (relations.some((r) => !r.target)) {
      this.held.add(data, start, end);
      return;
    }
    this.requireSerial('TRUNCATE');
    (this.tally as SegmentTally).changes++;
    this.changes++;
    this.router.flushAll();
    this.push(this.firstLane, { kind: 'truncate', relations, cascade: message.cascade, restartIdentity: message.restartIdentity });
  }

  private logicalMessage(message: LogicalMessage): Promise<void> | undefined {
    if (message.prefix === MessagePrefix.Ddl) return this.schemaChange(message.content);
    if (message.prefix === MessagePrefix.Heartbeat) this.sequences = heartbeatSequences(message);
    return undefined;
  }

  /**
   * A schema change: applied on the first lane at its position; then the catalog is read again through
   * that lane's transaction, relations are routed anew, and rows held for tables it created are applied.
   */
  private async schemaChange(content: Buffer): Promise<void> {
    const tally = this.tally as SegmentTally;
    let record: DdlRecord;
    try {
      record = parseDdlRecord(content);
    } catch (error) {
      const position = this.position();
      throw new PitrError(
        'Replay',
        `cannot replay the schema change ${positionText(position)} in segment ${tally.segment.name}: ${(error as Error).message}`,
        `restore to a point before it (--to lsn:${position.commitLsn} --exclusive); "pitr verify --ddl" lists every schema change that cannot be replayed`,
      );
    }
    const action = ddlAction(record);
    if (action.kind === 'extension-script') {
      this.extensionScript++;
      return;
    }
    if (this.extensionScript > 0 && (record.tag === 'CREATE EXTENSION' || record.tag === 'ALTER EXTENSION')) this.extensionScript--;
    const position = this.position();
    if (action.kind === 'skip') {
      this.input.log.debug(
        { event: 'ddl_skipped', commitLsn: position.commitLsn, tag: record.tag, reason: action.reason },
        `schema change skipped: ${action.reason}`,
      );
      return;
    }
    this.requireSerial('DDL statement');
    if (action.kind === 'unreplayable')
      throw new PitrError(
        'Replay',
        `cannot replay the schema change ${positionText(position)} (${record.tag}): ${action.reason}`,
        `restore to a point before it (--to lsn:${position.commitLsn} --exclusive); "pitr verify --ddl" lists every schema change that cannot be replayed`,
      );
    tally.changes++;
    this.changes++;
    (this.transaction as OpenTransaction).ddl = true;
    this.router.flushAll();
    this.push(this.firstLane, { kind: 'ddl', action, position });
    const reread = deferred();
    let catalog: TargetCatalog | undefined;
    this.push(this.firstLane, { kind: 'call', run: async (client) => void (catalog = await TargetCatalog.load(client)), done: reread });
    await reread.promise;
    if (catalog) this.catalog = catalog;
    for (const [id, relation] of this.relations) {
      if (!relation.wanted) continue;
      const target = this.targetOf(id, relation.message);
      if (
        target !== relation.target ||
        target?.sql !== relation.target?.sql ||
        target?.keysCommute !== relation.target?.keysCommute ||
        target?.primaryKey.join() !== relation.target?.primaryKey.join()
      )
        this.relations.set(id, replayRelation(relation.message, target, true));
    }
    for (const held of this.held.count > 0 ? this.held.drain() : []) {
      // only row changes are held, and a row change never waits for its application
      if (this.record(held, 0, held.length)) throw new PitrError('Internal', 'a held row change asked to be waited for');
    }
  }

  private requireSerial(what: string): void {
    const tally = this.tally as SegmentTally;
    if (!tally.serial)
      throw new PitrError('Integrity', `segment ${tally.segment.name} holds a ${what} its manifest does not count`, 'run "pitr verify --deep"');
  }

  private handOn(batch: TableBatch): void {
    const id = batch.relation.message.relationId;
    if (batch.part >= 0) this.push(this.laneOfPart(batch.part), { kind: 'batch', batch, parts: this.splitOf(id).parts });
    else this.push(this.laneFor(id), { kind: 'batch', batch });
  }

  private push(lane: ApplyLane, job: DistributiveOmit<LaneJob, 'segment'>): void {
    lane.push({ ...job, segment: (this.tally as SegmentTally).segment } as LaneJob);
  }

  /** Serial segments use the first lane; otherwise a table keeps the lane it was first given, the least loaded then. */
  private laneFor(relationId: number): ApplyLane {
    if ((this.tally as SegmentTally).serial) return this.firstLane;
    let lane = this.laneOf.get(relationId);
    if (!lane) {
      lane = this.lanes.reduce((a, b) => (b.load < a.load ? b : a));
      this.laneOf.set(relationId, lane);
    }
    return lane;
  }
}

/** A REPLICA IDENTITY FULL change matched by the target's primary key whose old row lacks a key value (TOASTed, unchanged): matched row by row instead. */
function keyNotCarried(change: RawChange, relation: ReplayRelation): boolean {
  if (relation.message.replicaIdentity !== 'f' || !change.hasOld) return false;
  return relation.keyIndexes.some((i) => change.old.kinds[i] === ValueKind.Unchanged);
}

/**
 * Whether the transaction whose Begin is record `i` of `frame` holds a schema change or a TRUNCATE,
 * judged from the records up to its Commit; undefined when it does not end in this frame.
 */
function holdsSerialWork(frame: RecordFrame, i: number): boolean | undefined {
  const { data, starts, ends, count } = frame;
  for (let j = i + 1; j < count; j++) {
    const start = starts[j] as number;
    const tag = data[start];
    if (tag === Tag.Commit) return false;
    if (tag === Tag.Truncate) return true;
    if (tag === Tag.Message && (decodePgoutput(data.subarray(start, ends[j] as number)) as LogicalMessage).prefix === MessagePrefix.Ddl) return true;
  }
  return undefined;
}

function heartbeatSequences(message: LogicalMessage): HeartbeatSequences {
  return (JSON.parse(message.content.toString('utf8')) as { sequences: HeartbeatSequences }).sequences;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function appliedCommit(t: OpenTransaction): AppliedCommit {
  return { commitLsn: formatLsn(t.commitLsn), commitTime: formatUnixMicros(t.commitTime), xid: t.xid };
}

/**
 * The part of a split table a key belongs to. Integers are mixed first (a multiplicative hash of both
 * 32-bit halves), so that keys of one stride (even ids, every tenth) still spread over the parts.
 * Stable: a resumed replay must find every key in the part it had.
 */
function partOfKey(key: string | number, parts: number): number {
  if (typeof key === 'number') {
    const mixed = Math.imul((key >>> 0) ^ Math.floor(key / 4294967296), 0x9e3779b1);
    return ((mixed ^ (mixed >>> 16)) >>> 0) % parts;
  }
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return hash % parts;
}

/** The Delete message of an update's old row (its key, or the whole row under REPLICA IDENTITY FULL). */
function deleteMessage(relationId: number, change: RawChange, data: Buffer): Buffer {
  const head = Buffer.alloc(6);
  head[0] = Tag.Delete;
  head.writeUInt32BE(relationId, 1);
  head[5] = change.oldKind;
  return Buffer.concat([head, data.subarray(change.old.from, change.old.to)]);
}

/** The Insert message of an update's new row, its unchanged (unsent) columns `unchanged` filled with `values`, in order (others left unchanged). */
function insertMessage(relationId: number, next: RawTuple, unchanged: readonly number[], values: readonly (string | null)[] | undefined): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head[0] = Tag.Insert;
  head.writeUInt32BE(relationId, 1);
  head[5] = 0x4e; // N
  head.writeUInt16BE(next.count, 6);
  parts.push(head);
  let u = 0;
  for (let i = 0; i < next.count; i++) {
    const kind = next.kinds[i];
    if (kind === ValueKind.Unchanged && unchanged[u] === i) {
      const value = values?.[u++];
      if (value === null || value === undefined) parts.push(Buffer.from('n'));
      else {
        const text = Buffer.from(value, 'utf8');
        const len = Buffer.alloc(5);
        len[0] = ValueKind.Text;
        len.writeInt32BE(text.length, 1);
        parts.push(len, text);
      }
    } else if (kind === ValueKind.Null) parts.push(Buffer.from('n'));
    else if (kind === ValueKind.Unchanged)
      parts.push(Buffer.from('u')); // left to fill
    else parts.push(next.buf.subarray((next.starts[i] as number) - 5, next.ends[i]));
  }
  return Buffer.concat(parts);
}
