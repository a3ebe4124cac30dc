import { decodeCheckedJson } from './checked-json';
import type { Repository } from './repository';
import { mapBounded } from './bounded-map';
import { BACKUPS_PREFIX, MANIFEST_FILE, type BackupManifest } from './backup-manifest';

/** Complete backups (those with a manifest), oldest aligned LSN first. */
export async function listBackups(repo: Repository): Promise<BackupManifest[]> {
  const { prefixes } = await repo.storage.list(BACKUPS_PREFIX, { delimiter: '/' });
  const read = await mapBounded(prefixes, async (prefix) => {
    const name = `${prefix}${MANIFEST_FILE}`;
    if (!(await repo.storage.stat(name))) return undefined;
    return decodeCheckedJson<BackupManifest>(await repo.storage.read(name), name);
  });
  return read.filter((m): m is BackupManifest => m !== undefined);
}

/** The newest complete backup, reading only as many manifests as needed. */
export async function newestBackup(repo: Repository): Promise<BackupManifest | undefined> {
  const { prefixes } = await repo.storage.list(BACKUPS_PREFIX, { delimiter: '/' });
  for (const prefix of [...prefixes].reverse()) {
    const name = `${prefix}${MANIFEST_FILE}`;
    if (await repo.storage.stat(name)) return decodeCheckedJson<BackupManifest>(await repo.storage.read(name), name);
  }
  return undefined;
}
