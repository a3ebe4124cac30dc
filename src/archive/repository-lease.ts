import { performance } from 'node:perf_hooks';
import { delay } from '../backoff';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import type { Storage } from '../storage/storage';
import { busyError, decideLease } from './lease-decision';
import { describeHolder, type LeaseHolder } from './lease-holder';
import { encodeLease, LEASE_PREFIX, leaseName, newLeaseRecord, readCurrentLease, type CurrentLease } from './lease-record';

export interface LeaseOptions {
  /** Not renewed for this long (storage clock), the lease may be taken over; renewed every third of it. */
  ttlMs: number;
  /** Take the lease even from a live holder (the operator knows it is gone). */
  takeover: boolean;
  log: Logger;
  /** Aborts a wait for an earlier run's lease to expire. */
  signal?: AbortSignal;
}

/** How often a wait for an expiring lease looks at it again, and how often it says so. */
const WAIT_POLL_MS = 1000;
const WAIT_LOG_MS = 5000;

/**
 * The single-writer lease of a repository, held by one archiver (docs/architecture.md, "One writer").
 *
 * Terminology: a "generation" is one stored state of the lease (`lease/<N>.json`); the "token" is the
 * fencing token, one more with each new holder. Timing: the holder renews every ttl/3 and stores nothing
 * once ttl·3/4 have passed (its own monotonic clock) since the start of its last confirmed renewal; another
 * writer takes over only when the newest generation is ttl old on the storage's clock. Offsets between
 * machines' clocks do not matter, only durations. Before and after storing each segment the holder also
 * checks that nobody wrote the next generation, which is how it notices an explicit --takeover at once.
 */
export class RepositoryLease {
  private lost: PitrError | undefined;
  private released = false;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private onLost: (error: PitrError) => void = () => undefined;

  private constructor(
    private readonly storage: Storage,
    readonly holder: LeaseHolder,
    readonly token: number,
    private generation: number,
    private renewedAt: number,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** Takes the lease, or refuses (PitrError 'Busy') while another writer holds it. */
  static async acquire(storage: Storage, holder: LeaseHolder, options: LeaseOptions): Promise<RepositoryLease> {
    let waitingSince: number | undefined;
    let watched: CurrentLease | null = null;
    let lastLog = 0;
    for (;;) {
      const current = await readCurrentLease(storage);
      const decision = await decideLease(storage, current, holder, options.takeover);
      if (decision.kind === 'refuse') throw busyError(storage.location, decision.holder, decision.ageMs, current?.record.ttlMs ?? 0, holder);
      if (decision.kind === 'wait') {
        // renewed while we watched: its holder is alive
        if (watched && current && current.record.generation !== watched.record.generation)
          throw busyError(storage.location, decision.holder, decision.ageMs, current.record.ttlMs, holder);
        watched ??= current;
        waitingSince ??= performance.now();
        if (performance.now() - lastLog >= WAIT_LOG_MS) {
          lastLog = performance.now();
          options.log.warn(
            { event: 'waiting_for_lease', holder: decision.holder, renewedMsAgo: decision.ageMs, ttlMs: current?.record.ttlMs },
            `waiting for the lease of repository ${storage.location} held by an earlier archiver of slot "${decision.holder.slot}" (host ${decision.holder.host}, pid ${decision.holder.pid}) to expire or be renewed`,
          );
        }
        await delay(WAIT_POLL_MS, options.signal);
        if (options.signal?.aborted) throw new PitrError('Interrupted', `stopped while waiting for the lease of repository ${storage.location}`);
        continue;
      }
      const previous = current?.record;
      const record = newLeaseRecord({ generation: (previous?.generation ?? 0) + 1, token: (previous?.token ?? 0) + 1, holder, ttlMs: options.ttlMs });
      const started = performance.now();
      if ((await storage.create(leaseName(record.generation), encodeLease(record))) === 'taken') continue; // another writer moved first: look again
      if (decision.kind === 'take')
        options.log.warn(
          { event: 'lease_taken_over', reason: decision.reason, previous: decision.holder, renewedMsAgo: decision.ageMs, token: record.token },
          `took over the lease of repository ${storage.location} from ${describeHolder(decision.holder)} (${decision.reason})`,
        );
      else
        options.log.info(
          { event: 'lease_acquired', token: record.token, generation: record.generation },
          `holding the lease of repository ${storage.location}`,
        );
      const lease = new RepositoryLease(storage, holder, record.token, record.generation, started, options.ttlMs, options.log);
      if (previous) void lease.removeOlder(record.generation);
      return lease;
    }
  }

  /** Renews every ttl/3 until released; `onLost` is told once when another writer took the lease. */
  startRenewing(onLost: (error: PitrError) => void): void {
    this.onLost = onLost;
    this.timer = setInterval(() => void this.renew().catch(() => undefined), this.ttlMs / 3);
  }

  /**
   * Before (and after) storing a segment: throws PitrError('Busy') when the lease was lost, and another
   * error, which the caller retries, while the lease could not be renewed in time.
   */
  async fence(): Promise<void> {
    if (this.lost) throw this.lost;
    if (performance.now() - this.renewedAt > this.ttlMs / 2) await this.renew();
    if (performance.now() - this.renewedAt > (this.ttlMs * 3) / 4)
      throw new PitrError('Repository', `the lease of repository ${this.storage.location} could not be renewed in time; storing waits until it is`);
    // only a takeover (or our own renewal, in flight) writes the next generation
    if (await this.storage.stat(leaseName(this.generation + 1))) {
      const current = await readCurrentLease(this.storage);
      if (current?.record.holder?.instance !== this.holder.instance || current.record.token !== this.token) throw this.markLost(current);
    }
  }

  /** Clean stop: writes a released generation, so the next writer need not wait. */
  async release(): Promise<void> {
    this.stopRenewing();
    await this.renewing?.catch(() => undefined);
    if (this.lost) return;
    const record = newLeaseRecord({ generation: this.generation + 1, token: this.token, holder: null, ttlMs: this.ttlMs });
    try {
      if ((await this.storage.create(leaseName(record.generation), encodeLease(record))) === 'taken') return;
      this.log.info({ event: 'lease_released', token: this.token }, `released the lease of repository ${this.storage.location}`);
      await this.removeGeneration(record.generation - 2);
    } catch (error) {
      this.log.warn(
        { event: 'lease_release_failed', error: messageOf(error) },
        `could not release the lease of repository ${this.storage.location}; it expires by itself`,
      );
    }
  }

  /** Stops renewing without releasing: the lease expires (used when uploads were abandoned and might still land). */
  stopRenewing(): void {
    this.released = true;
    clearInterval(this.timer);
  }

  private renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined));
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    if (this.lost) throw this.lost;
    if (this.released) return;
    const record = newLeaseRecord({ generation: this.generation + 1, token: this.token, holder: this.holder, ttlMs: this.ttlMs });
    const started = performance.now();
    let result;
    try {
      result = await this.storage.create(leaseName(record.generation), encodeLease(record));
    } catch (error) {
      this.log.warn(
        { event: 'lease_renewal_failed', error: messageOf(error), renewedMsAgo: Math.round(performance.now() - this.renewedAt) },
        `could not renew the lease of repository ${this.storage.location}; retrying`,
      );
      throw error;
    }
    if (result === 'taken') throw this.markLost(await readCurrentLease(this.storage).catch(() => null));
    this.generation = record.generation;
    this.renewedAt = started;
    void this.removeGeneration(record.generation - 2);
  }

  private markLost(current: CurrentLease | null): PitrError {
    if (this.lost) return this.lost;
    const by = current?.record.holder ? describeHolder(current.record.holder) : 'another writer';
    this.lost = new PitrError(
      'Busy',
      `lost the lease of repository ${this.storage.location} to ${by}: this archiver stopped before storing another segment, and acknowledged nothing it had not stored under its lease`,
      'another archiver took the repository over (--takeover, or this lease expired while the storage could not be reached); only one may write it: see docs/runbooks/second-writer.md',
    );
    this.stopRenewing();
    this.log.error({ event: 'lease_lost', by: current?.record.holder ?? null, token: this.token }, this.lost.message);
    this.onLost(this.lost);
    return this.lost;
  }

  private async removeGeneration(generation: number): Promise<void> {
    if (generation >= 1) await this.storage.remove(leaseName(generation)).catch(() => undefined);
  }

  /** Keeps the newest two generations (the current one and the one before, for people reading the history); renewals remove one each. */
  private async removeOlder(newest: number): Promise<void> {
    try {
      const { objects } = await this.storage.list(LEASE_PREFIX);
      for (const object of objects) if (object.name < leaseName(newest - 1)) await this.storage.remove(object.name);
    } catch {
      // best effort: leftovers are small and ignored
    }
  }
}
