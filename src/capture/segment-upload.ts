import type { Repository } from '../archive/repository';
import type { RepositoryLease } from '../archive/repository-lease';
import { FORMAT_VERSION } from '../archive/segment-format';
import type { SegmentManifest } from '../archive/segment-manifest';
import { backoffMs, delay } from '../backoff';
import { PitrError, messageOf } from '../errors';
import type { Logger } from '../logger';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import type { ArchiverObserver } from './archiver-observer';
import type { SegmentContents } from './stream-assembler';

/** What a sealed segment's manifest says besides its contents: where it links, who stored it, from which timeline. */
export interface ManifestContext {
  systemIdentifier: string;
  database: string;
  previous: SegmentManifest['previous'];
  timeline: number | null;
  fencingToken: number;
}

export function manifestFor(name: string, contents: SegmentContents, context: ManifestContext): SegmentManifest {
  return {
    format: FORMAT_VERSION,
    kind: 'segment',
    name,
    systemIdentifier: context.systemIdentifier,
    database: context.database,
    firstCommitLsn: formatLsn(contents.firstCommitLsn),
    lastCommitLsn: formatLsn(contents.lastCommitLsn),
    endLsn: formatLsn(contents.endLsn),
    firstCommitTime: formatUnixMicros(contents.firstCommitTime),
    lastCommitTime: formatUnixMicros(contents.lastCommitTime),
    transactions: contents.transactions,
    changes: contents.changes,
    tables: contents.tables,
    marks: contents.marks,
    ddl: contents.ddl,
    rawBytes: contents.spooled.rawBytes,
    storedBytes: contents.spooled.storedBytes,
    sha256: contents.spooled.sha256,
    previous: context.previous,
    createdAt: new Date().toISOString(),
    ...(context.timeline === null ? {} : { timeline: context.timeline }),
    fencingToken: context.fencingToken,
  };
}

export interface UploadDeps {
  repo: Repository;
  lease: RepositoryLease;
  log: Logger;
  observer?: ArchiverObserver;
  /** Aborted when the archiver gives up on what is not stored yet (a stop past its grace, a fatal error). */
  abandon: AbortSignal;
  /** Uploads inside storeSegment right now: while any may still land, the lease must not be released. */
  inside: { count: number };
  /** Resolves once the previous segment's manifest is stored: manifests go in chain order (data objects in parallel). */
  previousStored: Promise<void>;
  /** Leave the spool file in place: other repositories store the same segment from it. */
  keepSpool?: boolean;
  /** The repository's name, in logs, when the archiver writes several. */
  repository?: string;
}

/**
 * Stores one sealed segment, retrying with backoff until it is stored ('stored') or abandoned
 * ('abandoned'); an integrity error or a lost lease is thrown, never retried. The lease is checked before
 * the data and the manifest are written and again after: only a segment stored while holding it counts
 * as stored, so only such a segment is ever acknowledged.
 */
export async function uploadSegment(contents: SegmentContents, manifest: SegmentManifest, deps: UploadDeps): Promise<'stored' | 'abandoned'> {
  const { log, lease } = deps;
  for (let attempt = 0; ; attempt++) {
    if (deps.abandon.aborted) return 'abandoned';
    deps.inside.count++;
    try {
      const started = Date.now();
      await deps.repo.storeSegment(
        manifest.name,
        contents.spooled.path,
        manifest,
        () => lease.fence(),
        () => untilOrAbandoned(deps.previousStored, deps.abandon),
        deps.keepSpool === true,
      );
      await lease.fence();
      log.info(
        {
          event: 'segment_stored',
          segment: manifest.name,
          ...(deps.repository === undefined ? {} : { repository: deps.repository }),
          transactions: manifest.transactions,
          rawBytes: manifest.rawBytes,
          storedBytes: manifest.storedBytes,
          lastCommitTime: manifest.lastCommitTime,
          ms: Date.now() - started,
        },
        'segment stored',
      );
      for (const table of contents.replicaIdentityFull)
        log.info(
          { event: 'replica_identity_full', segment: manifest.name, table },
          `table ${table} has no primary key: pitr gave it REPLICA IDENTITY FULL so that its UPDATEs and DELETEs can be archived (SET pitr.auto_replica_identity = off leaves new tables alone)`,
        );
      for (const change of contents.unreplayable)
        log.warn(
          { event: 'ddl_unreplayable', segment: manifest.name, commitLsn: formatLsn(change.commitLsn), tag: change.tag, reason: change.reason },
          `archived a schema change that a restore cannot replay (${change.tag} committed at ${formatLsn(change.commitLsn)}): ${change.reason}; restores to points at or after it will stop there`,
        );
      deps.observer?.segmentStored({
        transactions: manifest.transactions,
        rawBytes: manifest.rawBytes,
        storedBytes: manifest.storedBytes,
        lastCommitTime: manifest.lastCommitTime,
        seconds: (Date.now() - started) / 1000,
      });
      return 'stored';
    } catch (error) {
      if (error instanceof PitrError && (error.kind === 'Integrity' || error.kind === 'Busy')) throw error;
      if (deps.abandon.aborted) return 'abandoned';
      const waitMs = backoffMs(attempt, 500, 30_000);
      deps.observer?.failed('upload');
      log.warn(
        {
          event: 'upload_retry',
          segment: manifest.name,
          ...(deps.repository === undefined ? {} : { repository: deps.repository }),
          error: messageOf(error),
          retryInMs: waitMs,
          attempt: attempt + 1,
        },
        'segment upload failed; retrying',
      );
      await delay(waitMs, deps.abandon);
    } finally {
      deps.inside.count--;
    }
  }
}

/**
 * Waits for the previous segment's manifest; rejects once the uploads are abandoned (the previous one
 * may never be stored then, and this one must not be stored after a hole).
 */
function untilOrAbandoned(previous: Promise<void>, abandon: AbortSignal): Promise<void> {
  if (abandon.aborted) return Promise.reject(new Error('uploads abandoned'));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(new Error('uploads abandoned'));
    abandon.addEventListener('abort', onAbort, { once: true });
    previous.then(
      () => {
        abandon.removeEventListener('abort', onAbort);
        resolve();
      },
      () => undefined,
    );
  });
}
