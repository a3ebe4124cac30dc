import { Client } from 'pg';
import type { Repository } from '../../src/archive/repository';
import type { BackupManifest } from '../../src/archive/backup-manifest';
import { findPgTool } from '../../src/backup/pg-tools';
import { DECODING_SESSION_OPTIONS } from '../../src/pg/session-settings';
import { loadTables, readBackupManifest, restoreSchemaSection, restoreSequences } from '../../src/restore/load-backup';

/**
 * Loads a backup, alone, into an empty database: pre-data schema, data, post-data, sequences, as
 * `pitr restore` does, over `jobs` sessions (chunks side by side, then pg_restore --jobs for indexes
 * and constraints).
 */
export async function loadBackup(repo: Repository, id: string, targetUrl: string, jobs = 1): Promise<BackupManifest> {
  const manifest = await readBackupManifest(repo, id);
  const pgRestore = await findPgTool('pg_restore', Math.floor(manifest.serverVersionNum / 10000));
  await restoreSchemaSection(repo, manifest, pgRestore, { connectionString: targetUrl }, 'pre-data');
  const sessions: Client[] = [];
  try {
    for (let i = 0; i < jobs; i++) {
      const client = new Client({ connectionString: targetUrl, options: DECODING_SESSION_OPTIONS });
      sessions.push(client);
      await client.connect();
    }
    await loadTables(repo, manifest, sessions, manifest.tables);
    await restoreSequences(sessions[0] as Client, manifest.sequences);
  } finally {
    for (const client of sessions) await client.end().catch(() => undefined);
  }
  await restoreSchemaSection(repo, manifest, pgRestore, { connectionString: targetUrl }, 'post-data', { jobs });
  return manifest;
}
