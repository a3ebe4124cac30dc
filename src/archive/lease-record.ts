import { PitrError } from '../errors';
import type { Storage } from '../storage/storage';
import { decodeCheckedJson, encodeCheckedJson } from './checked-json';
import type { LeaseHolder } from './lease-holder';
import { FORMAT_VERSION } from './segment-format';

/**
 * One generation of a repository's writer lease (docs/format.md, "Writer lease"). Every change (taking,
 * renewing, releasing) creates the next generation, create-only, so two writers can never both make the
 * same change: the one whose create fails has lost the race.
 */
export interface LeaseRecord {
  format: number;
  kind: 'writer-lease';
  generation: number;
  /** The fencing token: one more with each new holder, kept by renewals. Segment manifests name the token they were stored under. */
  token: number;
  /** null once released by a clean stop. */
  holder: LeaseHolder | null;
  /** Not renewed for this long (by the storage's clock), the lease has expired. */
  ttlMs: number;
  /** The holder's clock when it wrote this generation: for people only; expiry is decided on the storage's clock. */
  writtenAt: string;
}

export const LEASE_PREFIX = 'lease/';

/** `lease/<generation, 12 digits>.json`: names sort by generation. */
export function leaseName(generation: number): string {
  return `${LEASE_PREFIX}${String(generation).padStart(12, '0')}.json`;
}

const NAME = /^lease\/(\d{12})\.json$/;

export function newLeaseRecord(fields: Omit<LeaseRecord, 'format' | 'kind' | 'writtenAt'>): LeaseRecord {
  return { format: FORMAT_VERSION, kind: 'writer-lease', ...fields, writtenAt: new Date().toISOString() };
}

export const encodeLease = (record: LeaseRecord): Buffer => encodeCheckedJson(record);

/** The newest generation, when the object was written (storage clock), or null when the repository never had a writer lease. */
export interface CurrentLease {
  record: LeaseRecord;
  name: string;
  modifiedAt: Date | undefined;
}

export async function readCurrentLease(storage: Storage): Promise<CurrentLease | null> {
  const { objects } = await storage.list(LEASE_PREFIX);
  const newest = objects.filter((o) => NAME.test(o.name)).at(-1);
  if (!newest) return null;
  const record = decodeCheckedJson<LeaseRecord>(await storage.read(newest.name), newest.name);
  if (record.kind !== 'writer-lease' || leaseName(record.generation) !== newest.name)
    throw new PitrError(
      'Integrity',
      `object ${newest.name} is corrupt: it is not the lease generation its name says`,
      'run "pitr verify"; remove the object by hand once no archiver runs',
    );
  const modifiedAt = newest.modifiedAt ?? (await storage.stat(newest.name))?.modifiedAt;
  return { record, name: newest.name, modifiedAt };
}

/** Milliseconds since the generation was written, both ends on the storage's clock; null when the storage gave no time (never taken as expired). */
export async function leaseAgeMs(storage: Storage, current: CurrentLease): Promise<number | null> {
  if (!current.modifiedAt) return null;
  return Math.max(0, (await storage.now()).getTime() - current.modifiedAt.getTime());
}
