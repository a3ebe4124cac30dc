import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** Who holds (or held) a repository's writer lease: an archiver of one slot of one source, in one process. */
export interface LeaseHolder {
  command: string;
  slot: string;
  systemIdentifier: string;
  database: string;
  host: string;
  pid: number;
  /** Random per process: two holders differ even when host and pid repeat (containers, restarts). */
  instance: string;
  /** Linux boot id and pid namespace: with the host, they make "this pid is gone" a certainty rather than a guess. */
  bootId: string | null;
  pidNamespace: string | null;
  startedAt: string;
}

const readOrNull = (read: () => string): string | null => {
  try {
    return read().trim();
  } catch {
    return null; // not Linux, or /proc not mounted
  }
};

/** This process as a lease holder. */
export function thisProcess(fields: Pick<LeaseHolder, 'command' | 'slot' | 'systemIdentifier' | 'database'>): LeaseHolder {
  return {
    ...fields,
    host: hostname(),
    pid: process.pid,
    instance: randomBytes(8).toString('hex'),
    bootId: readOrNull(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
    pidNamespace: readOrNull(() => readlinkSync('/proc/self/ns/pid')),
    startedAt: new Date().toISOString(),
  };
}

/**
 * True only when the holder ran on this machine, in this boot and pid namespace, and its process no longer
 * exists: a kill -9 or a crash. Anything less certain (another machine, a container of its own, no /proc)
 * answers false, and the lease must expire instead.
 */
export function holderIsGone(holder: LeaseHolder, self: LeaseHolder): boolean {
  if (holder.host !== self.host || holder.bootId === null || holder.bootId !== self.bootId) return false;
  if (holder.pidNamespace === null || holder.pidNamespace !== self.pidNamespace) return false;
  if (holder.pid === self.pid) return holder.instance !== self.instance; // its pid is ours now: it exited before we started
  try {
    process.kill(holder.pid, 0);
    return false; // alive (or reused by another process: then waiting for expiry is the safe side)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** `slot "pitr" of database "shop" on host db1 (pid 4242)`. */
export function describeHolder(holder: LeaseHolder): string {
  return `slot "${holder.slot}" of database "${holder.database}" (system identifier ${holder.systemIdentifier}) on host ${holder.host} (pid ${holder.pid})`;
}

/** The same slot of the same source: a restart of that archiver, not a second writer. */
export function sameArchiver(
  a: Pick<LeaseHolder, 'slot' | 'systemIdentifier' | 'database'>,
  b: Pick<LeaseHolder, 'slot' | 'systemIdentifier' | 'database'>,
): boolean {
  return a.slot === b.slot && a.systemIdentifier === b.systemIdentifier && a.database === b.database;
}
