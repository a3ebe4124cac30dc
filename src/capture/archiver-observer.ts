/**
 * What the archiver reports as it works, for its metrics. Implementations must return quickly and never
 * throw: they run inside the archiver's upload and stream callbacks.
 */
export interface ArchiverObserver {
  /** A segment (data and manifest) is durably stored. */
  segmentStored(segment: StoredSegment): void;
  /** A failure the archiver survives (it retries or carries on). */
  failed(kind: ArchiverFailure): void;
  /** A segment was sealed (its upload starts): the newest position every repository's lag is measured from. */
  segmentSealed?(segment: SegmentPosition): void;
  /** One repository (by its name) durably holds a segment, or could (not) be written just now. */
  repositoryStored?(repository: string, segment: SegmentPosition): void;
  repositoryUp?(repository: string, up: boolean): void;
}

/** Where a segment ends: its end LSN (text) and the commit time of its last transaction (ISO). */
export interface SegmentPosition {
  endLsn: string;
  lastCommitTime: string;
}

export interface StoredSegment {
  transactions: number;
  rawBytes: number;
  storedBytes: number;
  /** Commit time of its last transaction (ISO, microseconds). */
  lastCommitTime: string;
  /** How long storing it took. */
  seconds: number;
}

/**
 * upload: storing a segment failed (retried); connection: the replication connection was lost (reconnects);
 * heartbeat: emitting the heartbeat failed; backup: a scheduled base backup failed (tried again later).
 */
export type ArchiverFailure = 'upload' | 'connection' | 'heartbeat' | 'backup';
