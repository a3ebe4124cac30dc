import { decodeCheckedJson } from '../archive/checked-json';
import { IDENTITY_OBJECT, type Repository } from '../archive/repository';
import { BACKUPS_PREFIX, MANIFEST_FILE, STARTED_FILE } from '../archive/backup-manifest';
import { SEGMENTS_PREFIX, segmentDataName } from '../archive/segment-manifest';
import { liveSegmentNames, segmentRangeOfName, uploadUnderWay } from '../archive/segment-names';
import { formatLsn } from '../pg/lsn';
import { isPitrError, messageOf } from '../errors';
import type { StorageEncryption } from '../storage/storage';

/** A problem found without the key (the shape of verify.ts's Problem). */
export interface SealedProblem {
  object: string;
  status: 'missing' | 'corrupt' | 'unreferenced' | 'gap';
  detail: string;
}

/**
 * `pitr verify` of an encrypted repository without its key (docs/format.md, "Encryption"). What needs
 * no key is checked:
 *
 *   - repository.json (plaintext, checked JSON);
 *   - every sealed object's envelope: its header, a size the layout allows, and the SHA-256 of its
 *     stored bytes against the one in its trailer (damage in storage; not a deliberate change, which
 *     only the key can tell);
 *   - the segment chain as the names show it: every manifest with its data object and every data object
 *     with its manifest, and no two live segments overlapping;
 *   - every backup folder complete (has its manifest.json).
 *
 * Not checked without the key: what the manifests say (the `previous` links with their SHA-256, sizes,
 * the backups' parts and what each backup needs), so a whole segment removed between two others with
 * its manifest, or a backup part removed, shows only with the key.
 */
export async function verifySealedRepository(
  repo: Repository,
  encryption: StorageEncryption,
): Promise<{ problems: SealedProblem[]; checked: { objects: number; bytes: number } }> {
  const problems: SealedProblem[] = [];
  const checked = { objects: 0, bytes: 0 };
  const report = (object: string, status: SealedProblem['status'], detail: string): number => problems.push({ object, status, detail });
  const storage = repo.storage;

  try {
    const bytes = await storage.read(IDENTITY_OBJECT);
    checked.objects++;
    checked.bytes += bytes.length;
    decodeCheckedJson(bytes, IDENTITY_OBJECT);
  } catch (error) {
    if (isPitrError(error, 'NotFound')) report(IDENTITY_OBJECT, 'missing', 'the repository has no identity (run "pitr init")');
    else if (isPitrError(error, 'Integrity')) report(IDENTITY_OBJECT, 'corrupt', messageOf(error).replace(`object ${IDENTITY_OBJECT} is corrupt: `, ''));
    else throw error;
  }

  const { objects } = await storage.list('');
  for (const object of objects) {
    if (!encryption.isSealed(object.name) || object.name.startsWith('.')) continue;
    let envelope: { bytes: number; problem?: string };
    try {
      envelope = await encryption.checkEnvelope(object.name);
    } catch (error) {
      if (isPitrError(error, 'NotFound')) continue; // removed since the listing (prune)
      if (isPitrError(error, 'Integrity')) {
        report(object.name, 'corrupt', messageOf(error));
        continue;
      }
      throw error;
    }
    checked.objects++;
    checked.bytes += envelope.bytes;
    if (envelope.problem) report(object.name, 'corrupt', envelope.problem);
  }

  const names = new Set(objects.map((o) => o.name));
  const segmentNames = objects.map((o) => o.name).filter((n) => n.startsWith(SEGMENTS_PREFIX));
  const live = liveSegmentNames(segmentNames.filter((n) => n.endsWith('.json')));
  const liveSet = new Set(live);
  const manifestNames = segmentNames.filter((n) => n.endsWith('.json'));
  const newest = manifestNames.length > 0 ? (manifestNames[manifestNames.length - 1] as string).slice(0, -'.json'.length) : '';
  for (const name of segmentNames) {
    const base = name.replace(/\.(json|lz4)$/, '');
    if (name.endsWith('.json') && liveSet.has(name) && !names.has(segmentDataName(base)))
      report(segmentDataName(base), 'missing', `object does not exist (its manifest ${name} is present)`);
    if (name.endsWith('.lz4') && !names.has(`${base}.json`) && !uploadUnderWay(name, newest))
      report(name, 'unreferenced', 'segment data without a manifest: not part of the archive');
  }
  let previous: { name: string; end: bigint } | undefined;
  for (const name of live) {
    const range = segmentRangeOfName(name);
    if (!range) continue;
    if (previous && range.first < previous.end)
      report(name, 'gap', `starts at ${formatLsn(range.first)}, before the end of ${previous.name} (${formatLsn(previous.end)}): the segments overlap`);
    previous = { name, end: range.end };
  }

  const { prefixes } = await storage.list(BACKUPS_PREFIX, { delimiter: '/' });
  for (const prefix of prefixes) {
    if (names.has(`${prefix}${MANIFEST_FILE}`)) continue;
    const started = names.has(`${prefix}${STARTED_FILE}`);
    report(
      prefix,
      'unreferenced',
      `incomplete backup: no ${MANIFEST_FILE}${started ? ` (${STARTED_FILE} present: in progress, or dead and removed by the next "pitr backup")` : ''}`,
    );
  }
  return { problems, checked };
}
