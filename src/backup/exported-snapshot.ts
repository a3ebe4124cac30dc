import { randomBytes } from 'node:crypto';
import type { Client, ClientConfig } from 'pg';
import { withClient, type PgEndpoint } from '../pg/with-client';
import { parseLsn, type Lsn } from '../pg/lsn';
import { reportWaits } from '../capture/prepare-source';
import { quoteIdent } from '../pg/sql-quote';
import type { Logger } from '../logger';

/**
 * A temporary logical slot created with an exported snapshot. The snapshot sees exactly the
 * transactions whose commit record is before `consistentLsn`; the stream carries the rest. It stays
 * importable (SET TRANSACTION SNAPSHOT) while its replication connection is open and idle, and the
 * slot disappears with the connection.
 */
export interface ExportedSnapshot {
  slotName: string;
  snapshotName: string;
  consistentLsn: Lsn;
  consistentLsnText: string;
}

export const BACKUP_SLOT_PREFIX = 'pitr_backup_';

/** How often a backup waiting for its slot names the transactions holding it up; PITR_WAIT_REPORT_MS overrides (tests). */
export const WAIT_REPORT_MS = 5000;

export function waitReportMs(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env.PITR_WAIT_REPORT_MS);
  return Number.isInteger(value) && value > 0 ? value : WAIT_REPORT_MS;
}

/** Exports a snapshot for the unit of work `fn`; its connection, and so the slot, is closed afterwards, whatever `fn` does. */
export function withExportedSnapshot<T>(
  source: PgEndpoint,
  log: Logger,
  openWatcher: () => Promise<Client>,
  fn: (snapshot: ExportedSnapshot) => Promise<T>,
): Promise<T> {
  return withClient(source, { replication: 'database', application_name: 'pitr backup' } as Partial<ClientConfig>, async (client) => {
    const slotName = `${BACKUP_SLOT_PREFIX}${randomBytes(6).toString('hex')}`;
    // The pre-15 spelling, still accepted by 15+, so PostgreSQL 14 works too.
    const result = await reportWaits(
      openWatcher,
      log,
      () =>
        client.query<{ consistent_point: string; snapshot_name: string }>(
          `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT`,
        ),
      waitReportMs(),
    );
    const row = result.rows[0] as { consistent_point: string; snapshot_name: string };
    return fn({ slotName, snapshotName: row.snapshot_name, consistentLsn: parseLsn(row.consistent_point), consistentLsnText: row.consistent_point });
  });
}
