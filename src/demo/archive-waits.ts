import { readFileSync } from 'node:fs';
import type { Client } from 'pg';
import { PitrError } from '../errors';
import type { PitrChild } from './pitr-cli';

const POLL_MS = 100;
const LIMIT_MS = 60_000;

function logTail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').trim().split('\n').slice(-2).join(' | ');
  } catch {
    return '';
  }
}

/** Polls `check` until it holds; fails when the archiver exits, the demo is aborted, or a minute passes. */
async function waitUntil(what: string, check: () => Promise<boolean>, archiver: PitrChild, logFile: string, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    signal.throwIfAborted();
    if (await check()) return;
    if (!archiver.running) throw new PitrError('Internal', `the archiver exited while waiting until ${what}: ${logTail(logFile)}`, `see its log ${logFile}`);
    if (Date.now() > deadline) throw new PitrError('Internal', `waited a minute, and still not ${what}`, `see the archiver's log ${logFile}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The archiver holds the slot once it streams. */
export function waitArchiverStreaming(client: Client, slot: string, archiver: PitrChild, logFile: string, signal: AbortSignal): Promise<void> {
  return waitUntil(
    'the archiver streams',
    async () => (await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [slot])).rowCount === 1,
    archiver,
    logFile,
    signal,
  );
}

/**
 * Everything committed so far is in the repository once the slot's confirmed position reaches the
 * current WAL position: the archiver confirms only what it has stored.
 */
export async function waitArchivedUpToNow(client: Client, slot: string, archiver: PitrChild, logFile: string, signal: AbortSignal): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const lsn = (rows[0] as { lsn: string }).lsn;
  await waitUntil(
    `the archive reaches ${lsn}`,
    async () =>
      (await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn', [slot, lsn])).rowCount === 1,
    archiver,
    logFile,
    signal,
  );
  return lsn;
}
