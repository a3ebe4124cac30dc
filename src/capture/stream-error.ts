import { PitrError, isPitrError } from '../errors';
import { connectionError } from '../pg/connect';
import { formatLsn, type Lsn } from '../pg/lsn';
import type { PgConnectConfig } from '../pg/pg-connect-config';

const SLOT_IN_USE = '55006';

export interface StreamErrorContext {
  slot: string;
  publication: string;
  source: string;
  /** The source's connection settings, for the role named in hints. */
  config?: PgConnectConfig;
  /** What the slot was acknowledged up to: changes after it are lost when the slot was invalidated. */
  durableLsn: Lsn;
}

/**
 * Errors of a replication session that retrying cannot cure become a PitrError; transient ones (a lost
 * connection, a source restarting) return undefined. A slot in use is transient for a while (the old
 * session of a restarted archiver may linger on the server), until `giveUpOnBusy`.
 */
export function classifyStreamError(error: unknown, at: StreamErrorContext, giveUpOnBusy: boolean): PitrError | undefined {
  if (isPitrError(error)) return error; // the connection's settings (no password, say): retrying cannot cure it
  const e = error as { code?: string; message?: string; detail?: string };
  const message = e.message ?? '';
  if (e.code === SLOT_IN_USE && giveUpOnBusy) {
    return new PitrError(
      'Busy',
      `replication slot "${at.slot}" is in use by another archiver (${message})`,
      'only one archiver may stream from a slot; stop the other one, or use another slot with --slot',
    );
  }
  // both are 42704 (undefined object): the publication when pgoutput looks it up while decoding
  if (/publication .* does not exist/.test(message)) {
    return new PitrError(
      'SourceConfig',
      `publication "${at.publication}" does not exist on ${at.source} (${message})`,
      `create it again with "pitr init --publication ${at.publication}"; if the archiver still fails on it (changes made while it did not exist cannot be decoded), drop the slot, run "pitr init" (the gap is recorded) and take a new base backup`,
    );
  }
  if (/replication slot .* does not exist/.test(message)) {
    return new PitrError('SourceConfig', `replication slot "${at.slot}" does not exist on ${at.source}`, 'run "pitr init" first');
  }
  // PostgreSQL 15 says "cannot read from logical replication slot" and gives the reason only in the detail
  if (/can no longer get changes|has been invalidated|wal_status/i.test(`${message} ${e.detail ?? ''}`)) {
    return new PitrError(
      'SourceConfig',
      `replication slot "${at.slot}" was invalidated: ${message}${e.detail ? ` (${e.detail.replace(/\.$/, '')})` : ''}; changes after ${formatLsn(at.durableLsn)} are lost to the archive`,
      `drop the slot (SELECT pg_drop_replication_slot('${at.slot}')), run "pitr init" and take a new base backup; the gap stays recorded in the archive`,
    );
  }
  if (e.code === '28P01' || e.code === '28000' || e.code === '3D000' || (e.code === '42501' && /replication role/i.test(message)))
    return connectionError(error, at.source, at.config);
  return undefined;
}
