import fs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import PQueue from 'p-queue';
import { performance } from 'node:perf_hooks';
import { thisProcess, type LeaseHolder } from '../archive/lease-holder';
import type { Repository, RepositoryIdentity } from '../archive/repository';
import { RepositoryLease } from '../archive/repository-lease';
import { segmentBaseName, type SegmentManifest } from '../archive/segment-manifest';
import { newestSlotCreation } from '../archive/slot-creation';
import type { SourceConnection } from '../config/connection';
import { backoffMs, delay } from '../backoff';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import type { ArchiverObserver } from './archiver-observer';
import { EMIT_HEARTBEAT_SQL } from './in-band-sql';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { ReplicationStream } from './replication-stream';
import { connectSource, identifySystem } from '../pg/connect';
import type { ReplicationSession } from '../pg/replication-session';
import { checkConnection, resumeAfter } from './connection-check';
import { historyCheck } from './history-check';
import { classifyStreamError } from './stream-error';
import { manifestFor, uploadSegment } from './segment-upload';
import { Condition, closeBounded, waitLogged } from './stop-waits';
import { StreamAssembler, type SegmentContents } from './stream-assembler';
import { IndexMaintainer } from '../archive/index-maintainer';
import { crashPoint } from '../archive/crash-point';
import type { AsyncReplica, SyncTarget } from './archive-targets';

export interface ArchiverOptions {
  slot: string;
  publication: string;
  segmentBytes: number;
  segmentAgeMs: number;
  heartbeatMs: number;
  uploadConcurrency: number;
  spoolDir?: string;
  /** Pause the stream while this many sealed segments wait for upload. */
  maxPendingSegments?: number;
  /** Told of stored segments and survived failures (the metrics endpoint). */
  observer?: ArchiverObserver;
  /**
   * Periodic work beside the stream (scheduled backups, retention), started once the repository is claimed
   * as ours and stopped, in reverse order, before run() returns.
   */
  alongside?: readonly { start(): void; stop(): Promise<void> }[];
  /** The repository's writer lease: expiry after this long unrenewed, and whether to take it from a live holder. */
  lease: { ttlMs: number; takeover: boolean };
  /** Asynchronous repositories, fed once the synchronous ones hold a segment (archive-targets.ts). */
  replicas?: readonly AsyncReplica[];
  /**
   * Brings synchronous repositories whose archive ends before another's level with it before streaming
   * (ops/target-catch-up.ts: an incremental copy), and answers the one whose end the stream continues.
   */
  levelTargets?: (targets: readonly SyncTarget[], log: Logger) => Promise<Repository>;
  /**
   * Brings a synchronous repository that could not be reached at start level with `from` as it was when
   * streaming began (`through`: its newest segment then), once it can be reached (ops/target-catch-up.ts).
   */
  levelLateTarget?: (from: SyncTarget, into: SyncTarget, through: string | null, log: Logger) => Promise<void>;
}

/** One synchronous repository as the archiver writes it: its lease, index, uploads and manifest order. */
interface SyncWriter {
  target: SyncTarget;
  /** Undefined while a repository that could not be reached at start is tried again (joinLate): its uploads wait, paused. */
  lease: RepositoryLease | undefined;
  index: IndexMaintainer;
  uploads: PQueue;
  /** Uploads inside storeSegment right now: while any may still land, its lease is not released. */
  storing: { count: number };
  /** Resolves once the manifest of the newest segment queued is stored here: the next one's manifest waits for it. */
  manifestsStored: Promise<void>;
}

/**
 * States (logged on every change):
 *   starting → connecting → streaming ⇄ backoff (lost connection or source restart) → draining → stopped
 * starting: the repository is claimed and its writer lease taken (or refused).
 * connecting: each connection is checked (source identity, timeline, publication, slot) before streaming.
 * draining: a stop was asked, in any state; within STOP_GRACE_MS finish the transaction being received,
 * seal, upload, acknowledge; what is not stored by then is left unacknowledged for the next run.
 */
export type ArchiverState = 'starting' | 'connecting' | 'streaming' | 'backoff' | 'draining' | 'stopped';

/** A stop waits this long at most for the transaction being received and for uploads, then leaves the rest unacknowledged. */
const STOP_GRACE_MS = 5_000;
/** Raw bytes handed to the compressor but not yet written; past this the stream is paused. */
const MAX_PENDING_COMPRESSION_BYTES = 16 * 1024 * 1024;
/** The heartbeat's session gives up connecting after this long (or one heartbeat interval, if shorter). */
const HEARTBEAT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The archiver: slot → segments → repositories, acknowledging the slot only with the end LSN of the last
 * transaction whose segment (data and manifest), and every segment before it, is durably stored in every
 * synchronous repository. Each synchronous repository is written from the spool file with uploads of its
 * own (one that is down is retried without holding up the others; the spool file stays until every one
 * holds the segment); asynchronous ones are fed afterwards (archive-targets.ts).
 */
export class Archiver {
  private state: ArchiverState = 'starting';
  private stream: ReplicationStream | undefined;
  private assembler!: StreamAssembler;
  /** Sealed segments in seal order; `waiting` counts the synchronous repositories that do not hold it yet. */
  private readonly inFlight: { segment: string; endLsn: Lsn; done: boolean; waiting: number; manifest: SegmentManifest }[] = [];
  /** The synchronous repositories, in the order given, once claimed and leased. */
  private writers: SyncWriter[] = [];
  /** The synchronous repository read at start (the one with the newest segment): where the archive's end is. */
  private reference: Repository;
  private sealing: Promise<void> = Promise.resolve();
  /** Seals started whose upload is not queued yet: until then the durable position must not move. */
  private sealsStarting = 0;
  private durableLsn: Lsn = 0n;
  /** End LSN of the newest segment stored (in seal order): where the archive's data ends. */
  private storedEndLsn: Lsn = 0n;
  /** The source's timeline of the current connection (of the newest segment before the first one); null when unknown. */
  private timeline: number | null = null;
  private previous: SegmentManifest['previous'] = null;
  private identity = { systemIdentifier: '', database: '' };
  private owner: RepositoryIdentity | undefined;
  private paused = false;
  private fatal: unknown;
  private heartbeatClient: Client | undefined;
  /** Where the current connection asked the server to start (the slot's position while the history sent again is checked). */
  private streamStart: Lsn = 0n;
  /** A heartbeat under way: the next interval skips rather than opening a second session beside a hung one. */
  private heartbeatRunning = false;
  /** Woken whenever a message was handled or the archiver failed: what a stop waits for is checked then. */
  private readonly changed = new Condition();
  /** The one timer that looks again at backpressure while the compressor catches up. */
  private compressionWait: NodeJS.Timeout | undefined;
  /** Aborted when run() ends: uploads still retrying then are abandoned (never acknowledged), so the process can exit. */
  private readonly abandonUploads = new AbortController();

  private readonly targets: readonly SyncTarget[];

  /** `repos`: one repository, or the synchronous repositories (at least one) in the order given. */
  constructor(
    repos: Repository | readonly SyncTarget[],
    private readonly source: SourceConnection,
    private readonly log: Logger,
    private readonly options: ArchiverOptions,
  ) {
    this.targets = Array.isArray(repos) ? repos : [{ name: 'repo1', repo: repos as Repository }];
    if (this.targets.length === 0) throw new PitrError('Internal', 'an archiver needs a synchronous repository');
    this.reference = (this.targets[0] as SyncTarget).repo;
  }

  private get repo(): Repository {
    return this.reference;
  }

  private get several(): boolean {
    return this.targets.length + (this.options.replicas?.length ?? 0) > 1;
  }

  private setState(next: ArchiverState, detail: Record<string, unknown> = {}): void {
    if (next === this.state) return;
    this.log.info({ event: 'state', from: this.state, to: next, ...detail }, `archiver ${next}`);
    this.state = next;
  }

  async run(signal: AbortSignal): Promise<void> {
    const system = await identifySystem(this.source.config, this.source.display);
    this.identity = { systemIdentifier: system.systemIdentifier, database: system.database };
    const holder = thisProcess({ command: 'archive', slot: this.options.slot, ...this.identity });
    const replicas = this.options.replicas ?? [];
    const late: SyncWriter[] = [];
    let joining: Promise<void>[] = [];
    try {
      // every repository's identity and lease before streaming: one that is another source's, or another
      // writer's, refuses the start; one that cannot be reached joins later while the others take the stream
      for (const target of this.targets) {
        const writer = this.newWriter(target);
        try {
          writer.lease = await this.acquire(target, holder, signal);
        } catch (error) {
          if (refusesStart(error) || this.targets.length === 1) throw error;
          this.reportDown(target, error, 'it joins once it can be reached; until then the slot does not advance');
          late.push(writer);
        }
        this.writers.push(writer);
      }
      const opened = this.writers.filter((w) => w.lease !== undefined);
      if (opened.length === 0) throw new PitrError('Repository', 'no synchronous repository can be written', 'see the warnings above for each one');
      // the first writer is one that is open: its manifest is the one observers and the index are told of
      this.writers = [...opened, ...late];
      const from = (opened[0] as SyncWriter).target;
      for (const replica of replicas) await replica.open({ identity: this.identity, holder, from: from.repo, signal });
      await this.catchUpWriters(opened);
      const through = (await this.reference.latestSegment())?.name ?? null;
      const reference = opened.find((w) => w.target.repo === this.reference)?.target ?? from;
      // the index is written by the lease holder only, beside the stream
      for (const writer of opened) writer.index.start();
      for (const replica of replicas) replica.start();
      joining = late.map((writer) => this.joinLate(writer, reference, through, holder, signal));
      await this.archive(signal);
    } finally {
      this.abandonUploads.abort(); // a late repository still being tried gives up
      await Promise.all(joining);
      for (const replica of [...replicas].reverse())
        await waitLogged(this.log, replica.stop(), `asynchronous repository ${replica.name} to stop`, performance.now() + STOP_GRACE_MS);
      for (const writer of this.writers) {
        // a segment whose upload may still land must not meet the next writer's: then the lease expires instead
        if (writer.storing.count > 0) writer.lease?.stopRenewing();
        else await writer.lease?.release();
      }
    }
  }

  private newWriter(target: SyncTarget): SyncWriter {
    return {
      target,
      lease: undefined,
      index: new IndexMaintainer(target.repo, this.identity, this.log),
      uploads: new PQueue({ concurrency: this.options.uploadConcurrency, autoStart: false }),
      storing: { count: 0 },
      manifestsStored: Promise.resolve(),
    };
  }

  /** The repository claimed as this source's archive (or refused), and its writer lease taken. */
  private async acquire(target: SyncTarget, holder: LeaseHolder, signal: AbortSignal): Promise<RepositoryLease> {
    await target.repo.storage.checkWritable();
    const owner = await target.repo.claim(this.identity);
    this.owner ??= owner;
    return RepositoryLease.acquire(target.repo.storage, holder, { ...this.options.lease, log: this.log, signal });
  }

  private reportDown(target: SyncTarget, error: unknown, then: string): void {
    this.log.warn(
      { event: 'repository_down', repository: target.name, error: messageOf(error) },
      `synchronous repository ${target.name} (${target.repo.storage.location}) cannot be written: ${messageOf(error)}; ${then}`,
    );
    this.options.observer?.repositoryUp?.(target.name, false);
  }

  /**
   * A synchronous repository that could not be reached at start, tried again with backoff while the
   * others take the stream (its uploads queue up, paused, and hold the slot as any synchronous
   * repository's do; backpressure bounds them). Once reached: claimed and leased as at start, brought level
   * with the archive as it was when streaming began (`through`), then its queued uploads run. A refusal
   * (another source's, another writer's, a diverged archive) stops the archiver.
   */
  private async joinLate(writer: SyncWriter, from: SyncTarget, through: string | null, holder: LeaseHolder, signal: AbortSignal): Promise<void> {
    const { target } = writer;
    const stop = this.abandonUploads.signal;
    for (let attempt = 0; !stop.aborted; attempt++) {
      await delay(backoffMs(attempt, 1_000, 30_000), stop).catch(() => undefined); // it was just tried
      if (stop.aborted) return;
      try {
        writer.lease ??= await this.acquire(target, holder, signal);
        if (!this.options.levelLateTarget) throw new PitrError('Internal', 'a late synchronous repository and no way to level it');
        await this.options.levelLateTarget(from, target, through, this.log);
        writer.lease.startRenewing((error) => this.fail(error));
        writer.index.start();
        writer.uploads.start();
        this.log.info({ event: 'repository_joined', repository: target.name }, `synchronous repository ${target.name} joined the stream`);
        return;
      } catch (error) {
        if (stop.aborted) return;
        if (refusesStart(error)) {
          this.fail(error);
          return;
        }
        this.reportDown(target, error, 'trying again');
      }
    }
  }

  /**
   * Synchronous repositories whose archive ends before another's (new, or down when an earlier run
   * stopped) are brought level with the one with the newest segment before streaming, which then
   * continues every chain from the same segment.
   */
  private async catchUpWriters(writers: readonly SyncWriter[]): Promise<void> {
    this.reference = (writers[0] as SyncWriter).target.repo;
    if (writers.length === 1) return;
    if (!this.options.levelTargets) throw new PitrError('Internal', 'several synchronous repositories and no way to level them');
    this.reference = await this.options.levelTargets(
      writers.map((w) => w.target),
      this.log,
    );
  }

  private async archive(signal: AbortSignal): Promise<void> {
    const lease = (this.writers[0] as SyncWriter).lease as RepositoryLease;
    const latest = await this.repo.latestSegment();
    if (latest) {
      this.durableLsn = parseLsn(latest.endLsn);
      this.storedEndLsn = this.durableLsn;
      this.timeline = latest.timeline ?? null;
      this.previous = await this.chainLink(latest);
    }
    const spoolDir = this.options.spoolDir ?? path.join(tmpdir(), `pitr-spool-${this.options.slot}-${process.pid}`);
    await fs.mkdir(spoolDir, { recursive: true });
    this.assembler = new StreamAssembler(spoolDir, latest ? parseLsn(latest.lastCommitLsn) : 0n);
    this.log.info(
      {
        event: 'resume',
        repo: this.repo.storage.location,
        ...(this.several ? { repositories: this.writers.map((w) => w.target.name) } : {}),
        source: this.source.display,
        slot: this.options.slot,
        from: formatLsn(this.durableLsn),
        segment: latest?.name ?? null,
        fencingToken: lease.token,
      },
      'archiver starting',
    );

    for (const writer of this.writers) {
      if (!writer.lease) continue; // a late one starts when it joins
      writer.lease.startRenewing((error) => this.fail(error));
      writer.uploads.start();
    }
    const ageTimer = setInterval(() => this.maybeSeal(false), Math.min(100, this.options.segmentAgeMs));
    const heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatMs);
    const alongside = this.options.alongside ?? [];
    for (const work of alongside) work.start();
    try {
      await this.streamUntilStopped(signal);
    } finally {
      // after a clean drain nothing is pending; after a fatal error nothing pending may be waited for
      this.abandonUploads.abort();
      for (const writer of this.writers) writer.uploads.clear();
      const deadline = performance.now() + STOP_GRACE_MS;
      for (const work of [...alongside].reverse())
        await waitLogged(this.log, work.stop(), 'work beside the stream (a scheduled backup or prune) to stop', deadline);
      clearInterval(heartbeatTimer);
      clearInterval(ageTimer);
      clearTimeout(this.compressionWait);
      await closeBounded(this.heartbeatClient?.end());
      // the index is a cache: what it has not written yet is written on the next start
      const waited = new AbortController();
      await Promise.race([Promise.all(this.writers.map((w) => w.index.close())), delay(5_000, waited.signal)]);
      waited.abort();
      await fs.rm(spoolDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /**
   * What the next segment names as its predecessor: the newest segment, unless `pitr init` re-created the
   * slot after it (its newest creation record names that segment as the newest then). The new slot starts
   * at its consistent point, so the transactions in between are not archived: the chain starts anew
   * (previous null) and every reader sees the gap instead of a continuous archive.
   */
  private async chainLink(latest: SegmentManifest): Promise<SegmentManifest['previous']> {
    const creation = await newestSlotCreation(this.repo, this.options.slot);
    const before = creation?.latestSegment;
    if (!creation || before?.name !== latest.name || before.sha256 !== latest.sha256) return { name: latest.name, sha256: latest.sha256 };
    this.log.warn(
      {
        event: 'chain_break',
        slot: this.options.slot,
        after: latest.name,
        from: { lsn: before.lastCommitLsn, time: before.lastCommitTime },
        to: { lsn: creation.consistentPoint, time: creation.createdAt },
      },
      `replication slot "${this.options.slot}" was re-created after the newest archived segment: transactions committed after ${before.lastCommitTime} (${before.lastCommitLsn}) and before ${creation.createdAt} (${creation.consistentPoint}) are not in the archive; the next segment starts a new chain`,
    );
    return null;
  }

  private async streamUntilStopped(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    let firstConnect = true;
    while (!signal.aborted) {
      this.setState('connecting');
      const stream = new ReplicationStream(this.source.config, this.options.slot, this.options.publication, {
        onMessage: (message) => this.onMessage(message),
        onKeepalive: (walEnd, reply) => this.onKeepalive(walEnd, reply),
      });
      this.stream = stream;
      let markStarted = (): void => undefined;
      const started = new Promise<'running'>((resolve) => (markStarted = () => resolve('running')));
      const ended = stream
        .run(
          (session) => this.prepareSession(session),
          () => markStarted(),
        )
        .then(() => 'ended' as const);
      ended.catch(() => undefined); // observed through the races below
      // one listener per connection attempt, removed after it: an archiver reconnecting for days must not pile them up
      let onAbort = (): void => undefined;
      const stopRequested = new Promise<'stop'>((resolve) => {
        onAbort = () => resolve('stop');
        signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        const first = await Promise.race([ended, stopRequested, started]);
        if (first === 'running') {
          this.setState('streaming', { startLsn: formatLsn(this.streamStart) });
          void this.heartbeat(); // sequences and clock right away, not one interval later
          attempt = 0;
          firstConnect = false;
          if ((await Promise.race([ended, stopRequested])) === 'stop') {
            await this.drain();
            return;
          }
        } else if (first === 'stop') {
          await this.drain();
          return;
        }
        throw new Error('replication connection closed by the server');
      } catch (error) {
        await closeBounded(stream.stop());
        this.stream = undefined;
        if (this.fatal) throw this.fatal;
        // refusals of the connection check: the connection is dropped, nothing was streamed or acknowledged
        if (error instanceof PitrError) throw error;
        const classified = classifyStreamError(
          error,
          {
            slot: this.options.slot,
            publication: this.options.publication,
            source: this.source.display,
            config: this.source.config,
            durableLsn: this.durableLsn,
          },
          firstConnect && attempt >= 4,
        );
        if (classified) throw classified;
        await this.assembler.reset();
        const waitMs = backoffMs(attempt, 250, 30_000);
        attempt++;
        this.options.observer?.failed('connection');
        this.setState('backoff', { error: messageOf(error), retryInMs: waitMs, attempt });
        await Promise.race([delay(waitMs), stopRequested]);
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    }
    await this.drain();
  }

  /** On each replication connection, before streaming: who was reached, and where to start (connection-check.ts). */
  private async prepareSession(session: ReplicationSession): Promise<Lsn> {
    const owner = this.owner as RepositoryIdentity;
    const end =
      this.timeline === null && this.storedEndLsn === 0n
        ? null
        : { storedEndLsn: this.storedEndLsn, acknowledgedLsn: this.durableLsn, timeline: this.timeline };
    let checked;
    try {
      checked = await checkConnection(session, {
        owner,
        end,
        slot: this.options.slot,
        publication: this.options.publication,
        source: this.source.display,
        repository: this.repo.storage.location,
      });
    } catch (error) {
      if (error instanceof PitrError && error.kind === 'Repository')
        this.log.error({ event: 'source_mismatch', error: error.message }, 'the source is not the one this archive follows');
      throw error;
    }
    if (checked.match.kind === 'promoted') {
      const { from, to, switchpoint } = checked.match;
      this.durableLsn = resumeAfter(checked.match, this.durableLsn);
      this.log.warn(
        { event: 'timeline_switch', from, to, switchpoint: formatLsn(switchpoint), resumeAt: formatLsn(this.durableLsn) },
        `the source was promoted: timeline ${to} since ${formatLsn(switchpoint)}; the archive ends before that and the slot is there: the stream continues`,
      );
    }
    this.timeline = checked.timeline;
    // a slot behind the archive's end: the server sends those transactions again, each compared with the archive's
    const check = end && (await historyCheck(this.repo, checked.slotLsn, end.storedEndLsn, { source: this.source.display, slot: this.options.slot }));
    this.assembler.history = check ?? undefined;
    if (!check) return (this.streamStart = this.durableLsn);
    this.log.info(
      { event: 'history_check', slot: formatLsn(check.slotLsn), storedEnd: formatLsn(this.storedEndLsn) },
      'the slot is behind the archive: streaming from the slot, the transactions sent again are compared with the archive',
    );
    return (this.streamStart = check.slotLsn < this.durableLsn ? check.slotLsn : this.durableLsn);
  }

  /** Acknowledges the durable position, but not past the slot's while the history sent again is being checked. */
  private sendStatus(): void {
    const check = this.assembler.history;
    this.stream?.sendStatus(check?.pending === true && check.slotLsn < this.durableLsn ? check.slotLsn : this.durableLsn);
  }

  private onMessage(message: Buffer): void {
    try {
      this.assembler.handle(message);
    } catch (error) {
      if (error instanceof PitrError && error.kind === 'Repository')
        this.log.error({ event: 'source_mismatch', error: error.message }, 'the source is not the one this archive follows');
      this.fail(error);
      return;
    }
    if (this.assembler.betweenTransactions) this.maybeSeal(false);
    this.applyBackpressure();
    this.changed.notify();
  }

  private onKeepalive(walEnd: Lsn, replyRequested: boolean): void {
    try {
      if (this.assembler.history?.pending && this.assembler.betweenTransactions) this.assembler.history.decodedTo(walEnd);
    } catch (error) {
      this.log.error({ event: 'source_mismatch', error: messageOf(error) }, 'the source is not the one this archive follows');
      this.fail(error);
      return;
    }
    // With nothing received that is not yet stored, everything before walEnd is archived (or was not ours).
    const checking = this.assembler.history?.pending === true;
    if (!checking && this.assembler.idle && this.sealsStarting === 0 && this.inFlight.length === 0 && walEnd > this.durableLsn) this.durableLsn = walEnd;
    if (replyRequested || this.assembler.idle) this.sendStatus();
  }

  private maybeSeal(force: boolean): void {
    if (!this.assembler?.betweenTransactions) return;
    const due = force || this.assembler.openRawBytes >= this.options.segmentBytes || this.assembler.openAgeMs >= this.options.segmentAgeMs;
    if (!due || this.assembler.openRawBytes === 0) return;
    const contents = this.assembler.seal();
    const timeline = this.timeline; // of the connection that received it, even if the upload starts after a reconnect
    this.sealsStarting++;
    this.sealing = this.sealing.then(async () => {
      try {
        const sealed = await contents;
        if (sealed) this.enqueueUpload(sealed, timeline);
      } finally {
        this.sealsStarting--;
      }
    });
    this.sealing.catch((error: unknown) => this.fail(error));
  }

  private enqueueUpload(contents: SegmentContents, timeline: number | null): void {
    const base = segmentBaseName(contents.firstCommitLsn, contents.endLsn);
    const context = { ...this.identity, previous: this.previous, timeline };
    // each repository's manifest carries its own lease's fencing token (a late one's: once it joined); the rest is the same everywhere
    const manifestOf = (writer: SyncWriter): SegmentManifest => manifestFor(base, contents, { ...context, fencingToken: leaseOf(writer).token });
    this.previous = { name: base, sha256: contents.spooled.sha256 };
    const first = manifestOf(this.writers[0] as SyncWriter);
    const entry = { segment: base, endLsn: contents.endLsn, done: false, waiting: this.writers.length, manifest: first };
    this.inFlight.push(entry);
    this.options.observer?.segmentSealed?.(entry.manifest);
    this.applyBackpressure();
    const keepSpool = this.writers.length > 1;
    this.writers.forEach((writer, i) => {
      const previousStored = writer.manifestsStored;
      let markStored = (): void => undefined;
      writer.manifestsStored = new Promise<void>((resolve) => (markStored = resolve));
      const observer = this.observerOf(writer, i);
      void writer.uploads.add(async () => {
        const manifest = i === 0 ? first : manifestOf(writer);
        const deps = {
          repo: writer.target.repo,
          lease: leaseOf(writer),
          log: this.log,
          abandon: this.abandonUploads.signal,
          inside: writer.storing,
          previousStored,
          keepSpool,
          ...(this.several ? { repository: writer.target.name } : {}),
          ...(observer ? { observer } : {}),
        };
        try {
          if ((await uploadSegment(contents, manifest, deps)) === 'abandoned') return;
        } catch (error) {
          this.fail(error);
          return;
        }
        // told in chain order: manifests are stored in chain order in each repository
        writer.index.stored(manifest);
        markStored();
        if (this.several) {
          this.options.observer?.repositoryStored?.(writer.target.name, manifest);
          this.options.observer?.repositoryUp?.(writer.target.name, true);
        }
        if (--entry.waiting > 0) return;
        if (keepSpool) await fs.rm(contents.spooled.path, { force: true }).catch(() => undefined);
        crashPoint('archive:segment-stored'); // stored, not acknowledged: the slot is behind the archive on the next start
        entry.done = true;
        this.acknowledgeStored();
      });
    });
  }

  /** What one repository's uploads tell the observer: stored segments counted once (the first's), failures each, and which repository is down. */
  private observerOf(writer: SyncWriter, i: number): ArchiverObserver | undefined {
    const observer = this.options.observer;
    if (!observer) return undefined;
    return {
      segmentStored: (segment) => (i === 0 ? observer.segmentStored(segment) : undefined),
      failed: (kind) => {
        observer.failed(kind);
        if (this.several) observer.repositoryUp?.(writer.target.name, false);
      },
    };
  }

  /** Advances the durable position over the prefix of the sealed segments every synchronous repository holds, in seal order. */
  private acknowledgeStored(): void {
    let advanced = false;
    while (this.inFlight[0]?.done) {
      const stored = this.inFlight.shift() as { endLsn: Lsn; manifest: SegmentManifest };
      this.storedEndLsn = stored.endLsn;
      if (this.storedEndLsn > this.durableLsn) this.durableLsn = this.storedEndLsn;
      for (const replica of this.options.replicas ?? []) replica.offer(stored.manifest);
      advanced = true;
    }
    if (advanced) this.sendStatus();
    this.applyBackpressure();
  }

  private applyBackpressure(): void {
    const limit = this.options.maxPendingSegments ?? 8;
    const busy = this.inFlight.length >= limit || this.assembler.pendingCompressionBytes > MAX_PENDING_COMPRESSION_BYTES;
    if (busy && !this.paused) {
      this.paused = true;
      this.stream?.pause();
    } else if (!busy && this.paused) {
      this.paused = false;
      this.stream?.resume();
    }
    if (busy && this.assembler.pendingCompressionBytes > MAX_PENDING_COMPRESSION_BYTES && !this.compressionWait) {
      // look again once the compressor has had time to catch up: one timer at a time, however often this runs
      this.compressionWait = setTimeout(() => {
        this.compressionWait = undefined;
        this.applyBackpressure();
      }, 20);
    }
  }

  private fail(error: unknown): void {
    if (this.fatal) return;
    this.fatal = error;
    this.log.error({ event: 'fatal', error: messageOf(error) }, 'archiver failed');
    this.changed.notify();
    void this.stream?.stop();
  }

  /**
   * Stop asked, in any state: let the transaction in progress arrive, seal, store and acknowledge what
   * can be stored within STOP_GRACE_MS. What is not stored by then is not acknowledged: the server sends
   * it again to the next run.
   */
  private async drain(): Promise<void> {
    this.setState('draining');
    const deadline = performance.now() + STOP_GRACE_MS;
    if (this.stream && !this.assembler.betweenTransactions)
      await waitLogged(
        this.log,
        this.changed.until(() => this.assembler.betweenTransactions || this.fatal !== undefined),
        'the transaction being received to end',
        deadline,
      );
    this.stream?.pause();
    if (this.assembler.betweenTransactions) this.maybeSeal(true);
    else await this.assembler.reset(); // not acknowledged: the server sends it again next time
    const stored = await waitLogged(this.log, this.finishUploads(), 'segments to be stored', deadline, () => ({
      segments: this.inFlight.filter((e) => !e.done).map((e) => e.segment),
    }));
    if (this.fatal) throw this.fatal;
    if (!stored) {
      this.abandonUploads.abort();
      this.log.warn(
        { event: 'stopped_unstored', segments: this.inFlight.filter((e) => !e.done).map((e) => e.segment), durable: formatLsn(this.durableLsn) },
        `stopping with ${this.inFlight.filter((e) => !e.done).length} segment(s) not stored: they were not acknowledged, the next run archives them again`,
      );
    }
    this.sendStatus();
    await this.stream?.flushed(); // the final position is on its way to the server before the session closes
    await closeBounded(this.stream?.stop());
    this.setState('stopped', { durable: formatLsn(this.durableLsn) });
  }

  private async finishUploads(): Promise<void> {
    await this.sealing;
    await Promise.all(this.writers.map((w) => w.uploads.onIdle()));
  }

  /** Emits the heartbeat (clock and sequence values) into the stream through a regular session. */
  private async heartbeat(): Promise<void> {
    if (this.heartbeatRunning) return;
    this.heartbeatRunning = true;
    try {
      // connecting gives up within one interval, so a hung attempt never overlaps the next
      this.heartbeatClient ??= await connectSource(this.source.config, this.source.display, {
        application_name: 'pitr heartbeat',
        connectionTimeoutMillis: Math.min(HEARTBEAT_CONNECT_TIMEOUT_MS, this.options.heartbeatMs),
      });
      await this.heartbeatClient.query(EMIT_HEARTBEAT_SQL);
    } catch (error) {
      this.log.debug({ event: 'heartbeat_failed', error: messageOf(error) }, 'heartbeat failed');
      this.options.observer?.failed('heartbeat');
      await closeBounded(this.heartbeatClient?.end());
      this.heartbeatClient = undefined;
    } finally {
      this.heartbeatRunning = false;
    }
  }

  get status(): { state: ArchiverState; durableLsn: string; host: string } {
    return { state: this.state, durableLsn: formatLsn(this.durableLsn), host: hostname() };
  }
}

/** A synchronous writer's lease: every upload runs after its repository was opened (late ones' queues start paused). */
function leaseOf(writer: SyncWriter): RepositoryLease {
  if (!writer.lease) throw new PitrError('Internal', `repository ${writer.target.name} written before it was opened`);
  return writer.lease;
}

/** What refuses a synchronous repository outright rather than waiting for it: another source's, another writer's, a key problem, a diverged archive. */
function refusesStart(error: unknown): boolean {
  if (!(error instanceof PitrError)) return false;
  if (error.kind === 'Repository') return messageOf(error).includes('belongs to another');
  return error.kind !== 'Connection';
}
