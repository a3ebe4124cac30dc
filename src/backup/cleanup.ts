import type { Client } from 'pg';
import { decodeCheckedJson } from '../archive/checked-json';
import type { Repository } from '../archive/repository';
import type { Logger } from '../logger';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE } from '../archive/backup-manifest';
import { messageOf } from '../errors';

/**
 * Removes the pieces of backups that never got their manifest. A backup in progress holds its
 * temporary slot (named in its started marker); once that slot is gone the backup is dead.
 */
export async function removeIncompleteBackups(repo: Repository, source: Client, log: Logger): Promise<void> {
  const { prefixes } = await repo.storage.list(BACKUPS_PREFIX, { delimiter: '/' });
  for (const prefix of prefixes) {
    if (await repo.storage.stat(`${prefix}${MANIFEST_FILE}`)) continue;
    // already removed: a local repository keeps the emptied directories, which still list as prefixes
    if ((await repo.storage.list(prefix)).objects.length === 0) continue;
    let slot: string | undefined;
    try {
      slot = decodeCheckedJson<{ slot: string }>(await repo.storage.read(`${prefix}${STARTED_FILE}`), `${prefix}${STARTED_FILE}`).slot;
    } catch {
      slot = undefined;
    }
    if (slot) {
      const { rowCount } = await source.query('SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [slot]);
      if (rowCount) continue; // still running
    }
    log.info({ event: 'incomplete_backup_removed', prefix }, `removing the pieces of incomplete backup ${prefix}`);
    await removePrefix(repo, prefix, log);
  }
}

/** Removes every object under `prefix`; failures are logged, the next backup retries. */
export async function removePrefix(repo: Repository, prefix: string, log: Logger): Promise<void> {
  try {
    const { objects } = await repo.storage.list(prefix);
    // the started marker last, so a half-removed backup is still recognised as incomplete
    const ordered = [...objects.filter((o) => !o.name.endsWith(STARTED_FILE)), ...objects.filter((o) => o.name.endsWith(STARTED_FILE))];
    for (const object of ordered) await repo.storage.remove(object.name);
  } catch (error) {
    log.warn({ event: 'cleanup_failed', prefix, error: messageOf(error) }, `could not remove the pieces of ${prefix}; the next backup will`);
  }
}
