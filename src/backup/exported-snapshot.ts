import { randomBytes } from 'node:crypto';
import type { Client, ClientConfig } from 'pg';
import { connectSource } from '../pg/connect';
import { parseLsn, type Lsn } from '../pg/lsn';
import { reportWaits } from '../capture/prepare-source';
import { quoteIdent } from '../pg/sql-quote';
import type { Logger } from '../logger';

/**
 * A temporary logical slot created with an exported snapshot. The snapshot sees exactly the
 * transactions whose commit record is before `consistentLsn`; the stream carries the rest. It stays
 * importable (SET TRANSACTION SNAPSHOT) while this replication connection is open and idle, and the
 * slot disappears with the connection.
 */
export interface ExportedSnapshot {
  slotName: string;
  snapshotName: string;
  consistentLsn: Lsn;
  consistentLsnText: string;
  release(): Promise<void>;
}

export const BACKUP_SLOT_PREFIX = 'pitr_backup_';

/** How often a backup waiting for its slot names the transactions holding it up; PITR_WAIT_REPORT_MS overrides (tests). */
export const WAIT_REPORT_MS = 5000;

export function waitReportMs(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env.PITR_WAIT_REPORT_MS);
  return Number.isInteger(value) && value > 0 ? value : WAIT_REPORT_MS;
}

export async function exportSnapshot(config: ClientConfig, display: string, log: Logger, openWatcher: () => Promise<Client>): Promise<ExportedSnapshot> {
  const client = await connectSource(config, display, { replication: 'database', application_name: 'pitr backup' } as Partial<ClientConfig>);
  const slotName = `${BACKUP_SLOT_PREFIX}${randomBytes(6).toString('hex')}`;
  try {
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
    return {
      slotName,
      snapshotName: row.snapshot_name,
      consistentLsn: parseLsn(row.consistent_point),
      consistentLsnText: row.consistent_point,
      release: async () => {
        await client.end().catch(() => undefined);
      },
    };
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}
