import { Client } from 'pg';
import type { Repository } from '../../src/archive/repository';
import type { BackupManifest } from '../../src/archive/backup-manifest';
import { findPgTool } from '../../src/backup/pg-tools';
import { DECODING_SESSION_OPTIONS } from '../../src/pg/session-settings';
import { loadTable, readBackupManifest, restoreSchemaSection, restoreSequences } from '../../src/restore/load-backup';

/** Loads a backup, alone, into an empty database: pre-data schema, data, post-data, sequences. */
export async function loadBackup(repo: Repository, id: string, targetUrl: string): Promise<BackupManifest> {
  const manifest = await readBackupManifest(repo, id);
  const pgRestore = await findPgTool('pg_restore', Math.floor(manifest.serverVersionNum / 10000));
  await restoreSchemaSection(repo, manifest, pgRestore, { connectionString: targetUrl }, 'pre-data');
  const client = new Client({ connectionString: targetUrl, options: DECODING_SESSION_OPTIONS });
  await client.connect();
  try {
    for (const table of manifest.tables) await loadTable(repo, manifest, client, table);
    await restoreSequences(client, manifest.sequences);
  } finally {
    await client.end();
  }
  await restoreSchemaSection(repo, manifest, pgRestore, { connectionString: targetUrl }, 'post-data');
  return manifest;
}
