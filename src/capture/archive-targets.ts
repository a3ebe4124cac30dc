import type { LeaseHolder } from '../archive/lease-holder';
import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';

/**
 * The repositories one archiver writes (README "Several repositories").
 *
 * Terminology: a "synchronous" repository holds the slot: the slot's confirmed position advances only
 * once a segment, and every segment before it, is durably stored in every synchronous repository. An
 * "asynchronous" repository (a replica) never holds it: it is offered each segment once the synchronous
 * ones hold it and copies it from one of them, catching up when it fell behind.
 */
export interface SyncTarget {
  /** How logs and metrics name it. */
  name: string;
  repo: Repository;
}

/** What a replica is told before streaming: whose archive it joins, and where to copy from. */
export interface ReplicaContext {
  identity: { systemIdentifier: string; database: string };
  holder: LeaseHolder;
  /** A synchronous repository holding every segment offered. */
  from: Repository;
  signal: AbortSignal;
}

/** An asynchronous repository, fed beside the stream (ops/async-repository-feed.ts). */
export interface AsyncReplica {
  readonly name: string;
  /** Before streaming: claims the repository and takes its lease; throws only what must refuse the start. */
  open(context: ReplicaContext): Promise<void>;
  start(): void;
  /** A segment every synchronous repository holds, in chain order. Returns at once. */
  offer(manifest: SegmentManifest): void;
  stop(): Promise<void>;
}
