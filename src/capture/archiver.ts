import fs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import PQueue from 'p-queue';
import type { Repository } from '../archive/repository';
import { FORMAT_VERSION } from '../archive/segment-format';
import { segmentBaseName, type SegmentManifest } from '../archive/segment-manifest';
import { newestSlotCreation } from '../archive/slot-creation';
import type { SourceConnection } from '../config/connection';
import { backoffMs, delay } from '../backoff';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import type { ArchiverObserver } from './archiver-observer';
import { EMIT_HEARTBEAT_SQL } from './in-band-sql';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import { ReplicationStream } from './replication-stream';
import { connectSource, connectionError, identifySystem } from '../pg/connect';
import { StreamAssembler, type SegmentContents } from './stream-assembler';
import { IndexMaintainer } from '../archive/index-maintainer';

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
}

/**
 * States (logged on every change):
 *   starting → connecting → streaming ⇄ backoff (lost connection or source restart) → draining → stopped
 * draining: a stop was asked; finish the transaction being received, seal, upload, acknowledge.
 */
export type ArchiverState = 'starting' | 'connecting' | 'streaming' | 'backoff' | 'draining' | 'stopped';

const SLOT_IN_USE = '55006';
/** Raw bytes handed to the compressor but not yet written; past this the stream is paused. */
const MAX_PENDING_COMPRESSION_BYTES = 16 * 1024 * 1024;

/**
 * The archiver: slot → segments → repository, acknowledging the slot only with the end LSN of the last
 * transaction whose segment (data and manifest) is durably stored.
 */
export class Archiver {
  private state: ArchiverState = 'starting';
  private stream: ReplicationStream | undefined;
  private assembler!: StreamAssembler;
  private readonly uploads: PQueue;
  /** Sealed segments in seal order, each with its upload outcome. */
  private readonly inFlight: { endLsn: Lsn; done: boolean; manifest: SegmentManifest }[] = [];
  /** The archive's index, told of each segment once it is stored, in chain order. */
  private index: IndexMaintainer | undefined;
  private sealing: Promise<void> = Promise.resolve();
  /** Seals started whose upload is not queued yet: until then the durable position must not move. */
  private sealsStarting = 0;
  private durableLsn: Lsn = 0n;
  private previous: SegmentManifest['previous'] = null;
  private identity = { systemIdentifier: '', database: '' };
  private paused = false;
  private fatal: unknown;
  private heartbeatClient: Client | undefined;
  /** Aborted when run() ends: uploads still retrying then are abandoned (never acknowledged), so the process can exit. */
  private readonly abandonUploads = new AbortController();

  constructor(
    private readonly repo: Repository,
    private readonly source: SourceConnection,
    private readonly log: Logger,
    private readonly options: ArchiverOptions,
  ) {
    this.uploads = new PQueue({ concurrency: options.uploadConcurrency });
  }

  private setState(next: ArchiverState, detail: Record<string, unknown> = {}): void {
    if (next === this.state) return;
    this.log.info({ event: 'state', from: this.state, to: next, ...detail }, `archiver ${next}`);
    this.state = next;
  }

  async run(signal: AbortSignal): Promise<void> {
    const system = await identifySystem(this.source.config, this.source.display);
    this.identity = { systemIdentifier: system.systemIdentifier, database: system.database };
    await this.repo.storage.checkWritable();
    await this.repo.claim(this.identity);
    this.index = new IndexMaintainer(this.repo, this.identity, this.log);
    this.index.start();
    const latest = await this.repo.latestSegment();
    if (latest) {
      this.durableLsn = parseLsn(latest.endLsn);
      this.previous = await this.chainLink(latest);
    }
    const spoolDir = this.options.spoolDir ?? path.join(tmpdir(), `pitr-spool-${this.options.slot}-${process.pid}`);
    await fs.mkdir(spoolDir, { recursive: true });
    this.assembler = new StreamAssembler(spoolDir, latest ? parseLsn(latest.lastCommitLsn) : 0n);
    this.log.info(
      {
        event: 'resume',
        repo: this.repo.storage.location,
        source: this.source.display,
        slot: this.options.slot,
        from: formatLsn(this.durableLsn),
        segment: latest?.name ?? null,
      },
      'archiver starting',
    );

    const ageTimer = setInterval(() => this.maybeSeal(false), Math.min(100, this.options.segmentAgeMs));
    const heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatMs);
    const alongside = this.options.alongside ?? [];
    for (const work of alongside) work.start();
    try {
      await this.streamUntilStopped(signal);
    } finally {
      // after a clean drain nothing is pending; after a fatal error nothing pending may be waited for
      this.abandonUploads.abort();
      this.uploads.clear();
      for (const work of [...alongside].reverse()) await work.stop();
      clearInterval(heartbeatTimer);
      clearInterval(ageTimer);
      await this.heartbeatClient?.end().catch(() => undefined);
      // the index is a cache: what it has not written yet is written on the next start
      const waited = new AbortController();
      await Promise.race([this.index?.close(), delay(5_000, waited.signal).catch(() => undefined)]);
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
      const ended = stream.run(this.durableLsn, () => markStarted()).then(() => 'ended' as const);
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
          this.setState('streaming', { startLsn: formatLsn(this.durableLsn) });
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
        await stream.stop();
        this.stream = undefined;
        if (this.fatal) throw this.fatal;
        const classified = this.classify(error, firstConnect && attempt >= 4);
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
    await this.finishUploads();
  }

  /** Errors that retrying cannot cure become a PitrError; transient ones return undefined. */
  private classify(error: unknown, giveUpOnBusy: boolean): PitrError | undefined {
    const e = error as { code?: string; message?: string; detail?: string };
    const message = e.message ?? '';
    if (e.code === SLOT_IN_USE && giveUpOnBusy) {
      return new PitrError(
        'Busy',
        `replication slot "${this.options.slot}" is in use by another archiver (${message})`,
        'only one archiver may stream from a slot; stop the other one, or use another slot with --slot',
      );
    }
    if (e.code === '42704' || /replication slot .* does not exist/.test(message)) {
      return new PitrError('SourceConfig', `replication slot "${this.options.slot}" does not exist on ${this.source.display}`, 'run "pitr init" first');
    }
    // PostgreSQL 15 says "cannot read from logical replication slot" and gives the reason only in the detail
    if (/can no longer get changes|has been invalidated|wal_status/i.test(`${message} ${e.detail ?? ''}`)) {
      return new PitrError(
        'SourceConfig',
        `replication slot "${this.options.slot}" was invalidated: ${message}${e.detail ? ` (${e.detail.replace(/\.$/, '')})` : ''}; changes after ${formatLsn(this.durableLsn)} are lost to the archive`,
        `drop the slot (SELECT pg_drop_replication_slot('${this.options.slot}')), run "pitr init" and take a new base backup; the gap stays recorded in the archive`,
      );
    }
    if (e.code === '28P01' || e.code === '28000' || e.code === '3D000') return connectionError(error, this.source.display);
    return undefined;
  }

  private onMessage(message: Buffer): void {
    try {
      this.assembler.handle(message);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (this.assembler.betweenTransactions) this.maybeSeal(false);
    this.applyBackpressure();
  }

  private onKeepalive(walEnd: Lsn, replyRequested: boolean): void {
    // With nothing received that is not yet stored, everything before walEnd is archived (or was not ours).
    if (this.assembler.idle && this.sealsStarting === 0 && this.inFlight.length === 0 && walEnd > this.durableLsn) this.durableLsn = walEnd;
    if (replyRequested || this.assembler.idle) this.stream?.sendStatus(this.durableLsn);
  }

  private maybeSeal(force: boolean): void {
    if (!this.assembler?.betweenTransactions) return;
    const due = force || this.assembler.openRawBytes >= this.options.segmentBytes || this.assembler.openAgeMs >= this.options.segmentAgeMs;
    if (!due || this.assembler.openRawBytes === 0) return;
    const contents = this.assembler.seal();
    this.sealsStarting++;
    this.sealing = this.sealing.then(async () => {
      try {
        const sealed = await contents;
        if (sealed) this.enqueueUpload(sealed);
      } finally {
        this.sealsStarting--;
      }
    });
    this.sealing.catch((error: unknown) => this.fail(error));
  }

  private enqueueUpload(contents: SegmentContents): void {
    const base = segmentBaseName(contents.firstCommitLsn, contents.endLsn);
    const manifest: SegmentManifest = {
      format: FORMAT_VERSION,
      kind: 'segment',
      name: base,
      systemIdentifier: this.identity.systemIdentifier,
      database: this.identity.database,
      firstCommitLsn: formatLsn(contents.firstCommitLsn),
      lastCommitLsn: formatLsn(contents.lastCommitLsn),
      endLsn: formatLsn(contents.endLsn),
      firstCommitTime: formatUnixMicros(contents.firstCommitTime),
      lastCommitTime: formatUnixMicros(contents.lastCommitTime),
      transactions: contents.transactions,
      changes: contents.changes,
      tables: contents.tables,
      marks: contents.marks,
      ddl: contents.ddl,
      rawBytes: contents.spooled.rawBytes,
      storedBytes: contents.spooled.storedBytes,
      sha256: contents.spooled.sha256,
      previous: this.previous,
      createdAt: new Date().toISOString(),
    };
    this.previous = { name: base, sha256: contents.spooled.sha256 };
    const entry = { endLsn: contents.endLsn, done: false, manifest };
    this.inFlight.push(entry);
    this.applyBackpressure();
    void this.uploads.add(async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const started = Date.now();
          await this.repo.storeSegment(base, contents.spooled.path, manifest);
          this.log.info(
            {
              event: 'segment_stored',
              segment: base,
              transactions: manifest.transactions,
              rawBytes: manifest.rawBytes,
              storedBytes: manifest.storedBytes,
              lastCommitTime: manifest.lastCommitTime,
              ms: Date.now() - started,
            },
            'segment stored',
          );
          for (const table of contents.replicaIdentityFull)
            this.log.info(
              { event: 'replica_identity_full', segment: base, table },
              `table ${table} has no primary key: pitr gave it REPLICA IDENTITY FULL so that its UPDATEs and DELETEs can be archived (SET pitr.auto_replica_identity = off leaves new tables alone)`,
            );
          for (const change of contents.unreplayable)
            this.log.warn(
              { event: 'ddl_unreplayable', segment: base, commitLsn: formatLsn(change.commitLsn), tag: change.tag, reason: change.reason },
              `archived a schema change that a restore cannot replay (${change.tag} committed at ${formatLsn(change.commitLsn)}): ${change.reason}; restores to points at or after it will stop there`,
            );
          this.options.observer?.segmentStored({
            transactions: manifest.transactions,
            rawBytes: manifest.rawBytes,
            storedBytes: manifest.storedBytes,
            lastCommitTime: manifest.lastCommitTime,
            seconds: (Date.now() - started) / 1000,
          });
          break;
        } catch (error) {
          if (error instanceof PitrError && error.kind === 'Integrity') {
            this.fail(error);
            return;
          }
          if (this.abandonUploads.signal.aborted) return;
          const waitMs = backoffMs(attempt, 500, 30_000);
          this.options.observer?.failed('upload');
          this.log.warn(
            { event: 'upload_retry', segment: base, error: messageOf(error), retryInMs: waitMs, attempt: attempt + 1 },
            'segment upload failed; retrying',
          );
          await delay(waitMs, this.abandonUploads.signal);
          if (this.abandonUploads.signal.aborted) return;
        }
      }
      entry.done = true;
      this.acknowledgeStored();
    });
  }

  /** Advances the durable position over the stored prefix of the sealed segments, in seal order. */
  private acknowledgeStored(): void {
    let advanced = false;
    while (this.inFlight[0]?.done) {
      const stored = this.inFlight.shift() as { endLsn: Lsn; manifest: SegmentManifest };
      this.durableLsn = stored.endLsn;
      this.index?.stored(stored.manifest);
      advanced = true;
    }
    if (advanced) this.stream?.sendStatus(this.durableLsn);
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
    if (busy && this.assembler.pendingCompressionBytes > MAX_PENDING_COMPRESSION_BYTES) {
      // resume once the compressor has caught up
      setTimeout(() => this.applyBackpressure(), 20);
    }
  }

  private fail(error: unknown): void {
    if (this.fatal) return;
    this.fatal = error;
    this.log.error({ event: 'fatal', error: messageOf(error) }, 'archiver failed');
    void this.stream?.stop();
  }

  /** Stop asked: let the transaction in progress arrive, then seal, store and acknowledge everything. */
  private async drain(): Promise<void> {
    this.setState('draining');
    const deadline = Date.now() + 60_000;
    while (!this.assembler.betweenTransactions && Date.now() < deadline && !this.fatal) await delay(20);
    this.stream?.pause();
    if (this.assembler.betweenTransactions) this.maybeSeal(true);
    else await this.assembler.reset(); // not acknowledged: the server sends it again next time
    await this.finishUploads();
    this.stream?.sendStatus(this.durableLsn);
    await delay(50);
    await this.stream?.stop();
    this.setState('stopped', { durable: formatLsn(this.durableLsn) });
  }

  private async finishUploads(): Promise<void> {
    await this.sealing;
    await this.uploads.onIdle();
    if (this.fatal) throw this.fatal;
  }

  /** Emits the heartbeat (clock and sequence values) into the stream through a regular session. */
  private async heartbeat(): Promise<void> {
    try {
      this.heartbeatClient ??= await connectSource(this.source.config, this.source.display, { application_name: 'pitr heartbeat' });
      await this.heartbeatClient.query(EMIT_HEARTBEAT_SQL);
    } catch (error) {
      this.log.debug({ event: 'heartbeat_failed', error: messageOf(error) }, 'heartbeat failed');
      this.options.observer?.failed('heartbeat');
      await this.heartbeatClient?.end().catch(() => undefined);
      this.heartbeatClient = undefined;
    }
  }

  get status(): { state: ArchiverState; durableLsn: string; host: string } {
    return { state: this.state, durableLsn: formatLsn(this.durableLsn), host: hostname() };
  }
}
