import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IndexMaintainer } from '../archive/index-maintainer';
import type { Repository } from '../archive/repository';
import { RepositoryLease } from '../archive/repository-lease';
import { segmentDataName, segmentManifestName, type SegmentManifest } from '../archive/segment-manifest';
import { backoffMs, delay } from '../backoff';
import { isPitrError, messageOf, PitrError } from '../errors';
import type { Logger } from '../logger';
import { copyObject } from './copy-object';
import { copyRepository } from './copy';
import type { ArchiverObserver } from '../capture/archiver-observer';
import type { AsyncReplica, ReplicaContext } from '../capture/archive-targets';

/** Segments waiting for an asynchronous repository; past this it is "behind" and catches up by a copy instead. */
const MAX_QUEUED_SEGMENTS = 64;

export interface AsyncFeedOptions {
  /** The repository's name (output, metrics) and storage. */
  name: string;
  repo: Repository;
  lease: { ttlMs: number; takeover: boolean };
  log: Logger;
  observer?: ArchiverObserver;
}

/**
 * One asynchronous repository of an archiver writing several (README "Several repositories"). It never
 * holds the slot: the archiver offers it each segment once every synchronous repository holds it
 * (acknowledged), from a bounded queue, and this copies the segment's data, then its manifest, from a
 * synchronous repository (checked as read, create-only: ops/copy-object.ts). When the queue overflows, or
 * the repository could not be written (down, full), it is "behind": it catches up with an incremental
 * `pitr copy` from the synchronous repository (ops/copy.ts), then follows the queue again. It has its own
 * writer lease and identity check; losing its lease stops feeding it, not the archiver.
 *
 * States: opening (identity, lease) → catching-up → following ⇄ catching-up (after a failure) → stopped.
 */
export class AsyncRepositoryFeed implements AsyncReplica {
  private queue: SegmentManifest[] = [];
  private behind = true;
  private lease: RepositoryLease | undefined;
  private index: IndexMaintainer | undefined;
  private stopped = false;
  private wake: () => void = () => undefined;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private spoolDir: string | undefined;
  private context: ReplicaContext | undefined;
  private foreign: unknown;

  constructor(private readonly options: AsyncFeedOptions) {}

  get name(): string {
    return this.options.name;
  }

  /**
   * Claims the repository and takes its lease once, before streaming: a repository of another source or
   * one another writer holds is refused (thrown); one that cannot be reached is tried again in the background.
   */
  async open(context: ReplicaContext): Promise<void> {
    this.context = context;
    try {
      await this.openOnce(context.signal);
    } catch (error) {
      if (this.refusal(error) || isPitrError(error, 'Interrupted')) throw error;
      this.options.log.warn(
        { event: 'repository_down', repository: this.name, error: messageOf(error) },
        `asynchronous repository ${this.name} (${this.options.repo.storage.location}) cannot be written: ${messageOf(error)}; archiving goes on and it catches up later`,
      );
      this.options.observer?.repositoryUp?.(this.name, false);
    }
  }

  start(): void {
    this.running = this.loop();
  }

  /** A segment every synchronous repository holds, in chain order. */
  offer(manifest: SegmentManifest): void {
    if (this.stopped) return;
    if (this.behind) return; // the catch-up copies it
    if (this.queue.length >= MAX_QUEUED_SEGMENTS) {
      this.queue = [];
      this.behind = true;
      this.options.log.warn(
        { event: 'repository_behind', repository: this.name, queued: MAX_QUEUED_SEGMENTS },
        `asynchronous repository ${this.name} is ${MAX_QUEUED_SEGMENTS} segments behind: it catches up by a copy`,
      );
    } else this.queue.push(manifest);
    this.wake();
  }

  /** Stops after the object being copied (what is left is copied on the next start), releases the lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake();
    await this.running;
    await this.index?.close();
    await this.lease?.release();
    if (this.spoolDir) await fs.rm(this.spoolDir, { recursive: true, force: true });
  }

  private async openOnce(signal: AbortSignal): Promise<void> {
    const { repo, log } = this.options;
    const { identity, holder } = this.opened;
    await repo.storage.checkWritable();
    await repo.claim(identity).catch((error: unknown) => {
      // another source's repository: never fed (a storage error while reading it is only "down")
      if (isPitrError(error, 'Repository') && messageOf(error).includes('belongs to another database')) this.foreign = error;
      throw error;
    });
    this.lease = await RepositoryLease.acquire(repo.storage, holder, { ...this.options.lease, log, signal });
    this.lease.startRenewing((error) => {
      log.error(
        { event: 'repository_feed_stopped', repository: this.name, error: error.message },
        `asynchronous repository ${this.name} is no longer fed: ${error.message}`,
      );
      this.stopped = true;
      this.wake();
    });
    this.index = new IndexMaintainer(repo, identity, log);
    this.index.start();
  }

  /** What stops feeding for good: another writer holds the repository, or it is another source's. Storage errors are retried. */
  private refusal(error: unknown): boolean {
    return isPitrError(error, 'Busy') || (error !== undefined && error === this.foreign);
  }

  private get opened(): ReplicaContext {
    if (!this.context) throw new PitrError('Internal', `asynchronous repository ${this.name} used before it was opened`);
    return this.context;
  }

  private async loop(): Promise<void> {
    for (let attempt = 0; !this.stopped;) {
      try {
        if (!this.lease) await this.openOnce(this.abort.signal);
        if (this.behind) await this.catchUp();
        const next = this.queue[0];
        if (!next) {
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        await this.copySegment(next);
        this.queue.shift();
        attempt = 0;
      } catch (error) {
        if (this.stopped) return;
        if (this.refusal(error) || isPitrError(error, 'Integrity')) {
          this.stopped = true;
          this.options.observer?.repositoryUp?.(this.name, false);
          this.options.log.error(
            { event: 'repository_feed_stopped', repository: this.name, error: messageOf(error) },
            `asynchronous repository ${this.name} is no longer fed: ${messageOf(error)}`,
          );
          return;
        }
        this.queue = [];
        this.behind = true;
        this.options.observer?.repositoryUp?.(this.name, false);
        const waitMs = backoffMs(attempt++, 500, 30_000);
        this.options.log.warn(
          { event: 'repository_down', repository: this.name, error: messageOf(error), retryInMs: waitMs },
          `asynchronous repository ${this.name} (${this.options.repo.storage.location}) cannot be written: ${messageOf(error)}; it catches up once it can`,
        );
        await delay(waitMs, this.abort.signal);
      }
    }
  }

  /** Everything the synchronous repository holds and this one lacks, by an incremental copy (create-only, chain order). */
  private async catchUp(): Promise<void> {
    const { repo, log } = this.options;
    const { from, identity } = this.opened;
    this.queue = [];
    // offers from now on are queued; the copy below takes everything stored before them
    this.behind = false;
    // only what follows its newest segment is listed: a catch-up costs what it copies, not the archive's length
    const newestHeld = (await repo.latestSegment())?.name;
    const report = await copyRepository(from, repo, {
      transfers: 4,
      log,
      signal: this.abort.signal,
      ...(newestHeld === undefined ? {} : { segmentsAfter: newestHeld }),
    });
    if (!report.ok || report.heldBack > 0)
      throw new Error(`catching up from ${from.storage.location} left ${report.refused.length + report.differs.length + report.heldBack} object(s) behind`);
    log.info(
      { event: 'repository_caught_up', repository: this.name, copied: report.copied.objects, bytes: report.copied.bytes },
      `asynchronous repository ${this.name} caught up (${report.copied.objects} objects copied)`,
    );
    const newest = await repo.latestSegment();
    this.options.observer?.repositoryUp?.(this.name, true);
    if (newest) this.options.observer?.repositoryStored?.(this.name, newest);
    // the index is read again from what the repository now holds
    await this.index?.close();
    this.index = new IndexMaintainer(repo, identity, log);
    this.index.start();
  }

  private async copySegment(manifest: SegmentManifest): Promise<void> {
    const { repo } = this.options;
    const { from } = this.opened;
    this.spoolDir ??= await fs.mkdtemp(path.join(tmpdir(), 'pitr-feed-'));
    const data = segmentDataName(manifest.name);
    const manifestName = segmentManifestName(manifest.name);
    for (const [name, check] of [
      [data, { kind: 'digest', sha256: manifest.sha256, bytes: manifest.storedBytes }],
      [manifestName, { kind: 'checked-json' }],
    ] as const) {
      await this.lease?.fence();
      const present = (await repo.storage.stat(name)) ?? undefined;
      const outcome = await copyObject({ from: from.storage, to: repo.storage, name, check, spoolDir: this.spoolDir, ...(present ? { present } : {}) });
      if (outcome.status !== 'copied' && outcome.status !== 'present')
        throw new PitrError(
          outcome.status === 'gone' ? 'NotFound' : 'Integrity',
          `${name} not copied into ${this.name}: ${'detail' in outcome ? outcome.detail : outcome.status}`,
        );
    }
    this.index?.stored(manifest);
    this.options.observer?.repositoryUp?.(this.name, true);
    this.options.observer?.repositoryStored?.(this.name, manifest);
  }
}
