import { readFileSync } from 'node:fs';
import type { SegmentManifest } from '../../src/archive/segment-manifest';
import type { PgCluster } from '../harness/pg-cluster';
import type { PitrProcess } from '../harness/pitr-process';
import { pollUntil } from '../harness/poll-until';
import { listFiles, objectFile } from '../harness/repo-files';

/** The archiver's exit code, or an error naming what it logged last when it has not exited in `ms` (a hang, not a slow exit). */
export async function exitWithin(archiver: PitrProcess, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), ms)));
  const outcome = await Promise.race([archiver.wait(), hung]);
  clearTimeout(timer);
  if (outcome === 'hung') {
    archiver.child.kill('SIGKILL');
    throw new Error(`the archiver did not exit; last log lines:\n${archiver.stderr.slice(-4000)}`);
  }
  return outcome;
}

/** Every segment manifest of a local repository, in name (LSN) order. */
export function segmentManifests(repoDir: string): SegmentManifest[] {
  return listFiles(repoDir)
    .filter((f) => f.startsWith('segments/') && f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(objectFile(repoDir, f), 'utf8')) as SegmentManifest);
}

export interface SlotState {
  confirmed: string | null;
  active: boolean;
}

/** The slot's confirmed position and whether a session holds it; null when it does not exist. */
export async function slotState(cluster: PgCluster, slot = 'pitr'): Promise<SlotState | null> {
  const rows = await cluster.query<{ confirmed: string | null; active: boolean }>(
    'SELECT confirmed_flush_lsn::text AS confirmed, active FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  return rows[0] ?? null;
}

/**
 * Waits until the slot has confirmed everything committed so far. The insert position, not
 * pg_current_wal_lsn(): the test clusters commit asynchronously, so the written position can still be
 * behind the last commit.
 */
export async function caughtUp(cluster: PgCluster, slot = 'pitr'): Promise<void> {
  const [{ lsn }] = (await cluster.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
  await pollUntil(
    () => cluster.query<{ ok: boolean }>('SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2', [lsn, slot]),
    (rows) => rows[0]?.ok === true,
    `slot ${slot} to confirm ${lsn}`,
  );
}
