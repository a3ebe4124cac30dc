import { lsnToSortableHex, parseLsn, type Lsn } from '../pg/lsn';
import { PitrError } from '../errors';
import { decodeCheckedJson, encodeCheckedJson } from './checked-json';
import type { Repository } from './repository';
import { FORMAT_VERSION } from './segment-format';
import type { SegmentManifest } from './segment-manifest';
import { mapBounded } from './bounded-map';

/**
 * The record `pitr init` stores when it creates the replication slot (docs/format.md). A slot streams
 * only what commits from its consistent point on: whatever committed between the newest archived
 * segment at that moment and the consistent point is not in the archive. The record is how that gap
 * stays known after the slot it was lost with is gone.
 */
export interface SlotCreation {
  format: number;
  kind: 'slot-creation';
  slot: string;
  systemIdentifier: string;
  database: string;
  /** The new slot's consistent point (X/Y): it streams exactly the transactions committed from here on. */
  consistentPoint: string;
  /** The source's clock just after the slot was created (ISO, UTC, microseconds): every transaction it missed committed before. */
  createdAt: string;
  /** The newest segment in the repository when the slot was created; null when there was none. */
  latestSegment: { name: string; sha256: string; endLsn: string; lastCommitLsn: string; lastCommitTime: string } | null;
}

export const SLOTS_PREFIX = 'slots/';

/** `slots/<slot>/<consistent point, 16 hex digits>.json`: sorts by position within a slot. */
export function slotCreationName(slot: string, consistentPoint: Lsn): string {
  return `${SLOTS_PREFIX}${slot}/${lsnToSortableHex(consistentPoint)}.json`;
}

/** What the record keeps of the repository's newest segment. */
export function latestSegmentOf(manifest: SegmentManifest | null): SlotCreation['latestSegment'] {
  if (!manifest) return null;
  const { name, sha256, endLsn, lastCommitLsn, lastCommitTime } = manifest;
  return { name, sha256, endLsn, lastCommitLsn, lastCommitTime };
}

/** Stores the record create-only, like every object of the repository. */
export async function storeSlotCreation(repo: Repository, record: SlotCreation): Promise<string> {
  const name = slotCreationName(record.slot, parseLsn(record.consistentPoint));
  await repo.storage.put(name, { kind: 'buffer', data: encodeCheckedJson(record) });
  return name;
}

/** Reads one record, its checksum checked and its content matched against its name. */
export async function readSlotCreation(repo: Repository, name: string): Promise<SlotCreation> {
  const record = decodeCheckedJson<SlotCreation>(await repo.storage.read(name), name);
  if (record.kind !== 'slot-creation' || name !== slotCreationName(record.slot, parseLsn(record.consistentPoint)))
    throw new PitrError(
      'Integrity',
      `object ${name} is corrupt: it does not describe the slot creation its name says`,
      'run "pitr verify" to list damaged objects',
    );
  return record;
}

/** Names of the stored records (of one slot, or of all), oldest consistent point first within a slot. */
export async function slotCreationNames(repo: Repository, slot?: string): Promise<string[]> {
  const { objects } = await repo.storage.list(slot === undefined ? SLOTS_PREFIX : `${SLOTS_PREFIX}${slot}/`);
  return objects.map((o) => o.name).filter((n) => n.endsWith('.json'));
}

/** Every record of the repository, in consistent-point order. */
export async function readSlotCreations(repo: Repository): Promise<SlotCreation[]> {
  const records = await mapBounded(await slotCreationNames(repo), (n) => readSlotCreation(repo, n));
  return records.sort((a, b) => compare(parseLsn(a.consistentPoint), parseLsn(b.consistentPoint)));
}

/** The newest record of `slot`, or null when the slot was never created by `pitr init` into this repository. */
export async function newestSlotCreation(repo: Repository, slot: string): Promise<SlotCreation | null> {
  const names = await slotCreationNames(repo, slot);
  const newest = names[names.length - 1];
  return newest === undefined ? null : readSlotCreation(repo, newest);
}

export function newSlotCreation(fields: Omit<SlotCreation, 'format' | 'kind'>): SlotCreation {
  return { format: FORMAT_VERSION, kind: 'slot-creation', ...fields };
}

const compare = (a: Lsn, b: Lsn): number => (a < b ? -1 : a > b ? 1 : 0);
