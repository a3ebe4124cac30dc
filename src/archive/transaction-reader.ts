import { decodePgoutput, type PgoutputMessage, type RelationMessage } from './pgoutput-decoder';
import type { Lsn } from '../pg/lsn';
import { PitrError } from '../errors';
import type { Repository } from './repository';
import { segmentDataName, type SegmentManifest } from './segment-manifest';
import { readSegmentRecords } from './segment-reader';
import { readManifestsBounded } from './archive-view';

/** One archived transaction, decoded. */
export interface ArchivedTransaction {
  xid: number;
  commitLsn: Lsn;
  endLsn: Lsn;
  commitTime: bigint;
  segment: string;
  /** Changes and messages in stream order; Relation messages resolved into `relations`. */
  messages: PgoutputMessage[];
  relations: Map<number, RelationMessage>;
}

/**
 * Reads the archive's transactions in commit order, checking every segment's checksum and the chain
 * of segments. Holds one transaction in memory at a time (for tests, `log` and `undo`; the replay
 * engine streams changes instead).
 */
export async function* readTransactions(repo: Repository, manifests?: SegmentManifest[]): AsyncGenerator<ArchivedTransaction> {
  const list = manifests ?? (await readManifestsBounded(repo, await repo.segmentManifestNames()));
  let previous: SegmentManifest | undefined;
  for (const manifest of list) {
    if (previous && (manifest.previous?.name !== previous.name || manifest.previous.sha256 !== previous.sha256)) {
      throw new PitrError(
        'Integrity',
        `segment chain broken before ${manifest.name}: it names ${manifest.previous?.name ?? 'no'} previous segment, the archive has ${previous.name}`,
        'run "pitr verify" to list missing or foreign segments',
      );
    }
    previous = manifest;
    const relations = new Map<number, RelationMessage>();
    let current: ArchivedTransaction | undefined;
    for await (const record of readSegmentRecords(repo.storage.readStream(segmentDataName(manifest.name)), manifest.name, manifest.sha256)) {
      const message = decodePgoutput(record);
      switch (message.tag) {
        case 'B':
          current = {
            xid: message.xid,
            commitLsn: message.finalLsn,
            endLsn: 0n,
            commitTime: message.commitTime,
            segment: manifest.name,
            messages: [],
            relations: new Map(relations),
          };
          break;
        case 'R':
          relations.set(message.relationId, message);
          current?.relations.set(message.relationId, message);
          break;
        case 'C':
          if (!current) throw new PitrError('Integrity', `segment ${manifest.name}: commit without begin`);
          current.endLsn = message.endLsn;
          yield current;
          current = undefined;
          break;
        default:
          current?.messages.push(message);
      }
    }
  }
}
