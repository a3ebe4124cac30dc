import { digestStream } from '../archive/checked-stream';
import type { Repository } from '../archive/repository';
import { segmentDataName, type SegmentManifest } from '../archive/segment-manifest';
import { PitrError } from '../errors';

/**
 * A segment that fails part-way (undecodable record, a value the target rejects) may be corrupt in a
 * way found before its checksum is: check the whole stored object and name it if so.
 */
export async function explainSegmentFailure(repo: Repository, segment: SegmentManifest, error: unknown): Promise<unknown> {
  if (error instanceof PitrError && error.kind === 'Integrity' && error.message.includes(segment.name)) return error;
  let actual: string;
  try {
    actual = (await digestStream(repo.storage.readStream(segmentDataName(segment.name)))).sha256;
  } catch (readError) {
    return readError;
  }
  if (actual !== segment.sha256) {
    return new PitrError(
      'Integrity',
      `segment ${segment.name} is corrupt: sha256 ${actual} does not match its manifest (${segment.sha256}); nothing from it was applied`,
      'run "pitr verify" to list damaged objects; restore to a point before this segment',
    );
  }
  return error;
}
