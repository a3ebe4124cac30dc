import { PitrError } from '../errors';
import type { Storage } from '../storage/storage';
import { describeHolder, holderIsGone, sameArchiver, type LeaseHolder } from './lease-holder';
import { leaseAgeMs, type CurrentLease } from './lease-record';

/**
 * What a would-be writer may do with the repository's current lease:
 *   free     nobody holds it (never taken, or released by a clean stop)
 *   take     held, but by a process known to be gone, expired, or --takeover
 *   wait     held and fresh by an earlier run of the same archiver (same slot, same source): it may be
 *            gone on another machine; wait for the lease to expire or to be renewed
 *   refuse   held and fresh by another writer
 */
export type LeaseDecision =
  | { kind: 'free' }
  | { kind: 'take'; reason: 'takeover' | 'holder-gone' | 'expired'; holder: LeaseHolder; ageMs: number | null }
  | { kind: 'wait'; holder: LeaseHolder; ageMs: number | null }
  | { kind: 'refuse'; holder: LeaseHolder; ageMs: number | null };

export async function decideLease(storage: Storage, current: CurrentLease | null, self: LeaseHolder, takeover: boolean): Promise<LeaseDecision> {
  const holder = current?.record.holder;
  if (!current || !holder) return { kind: 'free' };
  if (takeover) return { kind: 'take', reason: 'takeover', holder, ageMs: null };
  if (holderIsGone(holder, self)) return { kind: 'take', reason: 'holder-gone', holder, ageMs: null };
  const ageMs = await leaseAgeMs(storage, current);
  if (ageMs !== null && ageMs >= current.record.ttlMs) return { kind: 'take', reason: 'expired', holder, ageMs };
  return sameArchiver(holder, self) ? { kind: 'wait', holder, ageMs } : { kind: 'refuse', holder, ageMs };
}

const secondsText = (ms: number | null): string => (ms === null ? 'at an unknown time' : `${(ms / 1000).toFixed(1)} s ago`);

/** The refusal of a second writer, naming who writes and what to do. */
export function busyError(
  location: string,
  holder: LeaseHolder,
  ageMs: number | null,
  ttlMs: number,
  self: Pick<LeaseHolder, 'slot' | 'systemIdentifier' | 'database'>,
): PitrError {
  const expiry = `its lease expires ${ttlMs / 1000} s after its last renewal, or take it over now with --takeover (docs/runbooks/second-writer.md)`;
  if (sameArchiver(holder, self))
    return new PitrError(
      'Busy',
      `replication slot "${holder.slot}" is in use by another archiver, which holds the lease of repository ${location}: host ${holder.host}, pid ${holder.pid} (renewed ${secondsText(ageMs)})`,
      `only one archiver may write a repository; stop the other one. If it is gone for good (its machine is down), ${expiry}`,
    );
  return new PitrError(
    'Busy',
    `repository ${location} is being written by another archiver: ${describeHolder(holder)}, lease renewed ${secondsText(ageMs)}`,
    `one repository takes one archiver: give slot "${self.slot}" its own --repo, or stop that archiver first. If it is gone for good, ${expiry}`,
  );
}

/** For `pitr init`, which prepares a writer: refuses while another writer holds the repository. */
export async function checkNoOtherWriter(storage: Storage, current: CurrentLease | null, self: LeaseHolder, takeover: boolean): Promise<LeaseDecision> {
  const decision = await decideLease(storage, current, self, takeover);
  if (decision.kind === 'refuse') throw busyError(storage.location, decision.holder, decision.ageMs, current?.record.ttlMs ?? 0, self);
  return decision;
}
