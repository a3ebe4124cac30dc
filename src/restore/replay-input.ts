import type { Client } from 'pg';
import type { Repository } from '../archive/repository';
import type { SegmentManifest } from '../archive/segment-manifest';
import type { Logger } from '../logger';
import type { Lsn } from '../pg/lsn';
import type { RestorePlan } from './plan';

export type HeartbeatSequences = [string, string, string | null][];

export interface ReplayInput {
  repo: Repository;
  plan: RestorePlan;
  /** Records the progress of parallel segments once every lane committed them. */
  client: Client;
  /** Opens one more connection to the target, with the decoding session's settings. */
  connect: () => Promise<Client>;
  /** Connections applying at once (tables are shared out among them). */
  jobs: number;
  /** Commit LSN already applied to every table (restore_state), when resuming. */
  resumeAfter: Lsn | undefined;
  tables: Set<string> | undefined;
  log: Logger;
  /** Called as each segment has been read and handed to the lanes (for progress). */
  onSegmentRead?: (segment: SegmentManifest) => void;
  /** Aborted on SIGINT/SIGTERM: the lanes roll back what they have not committed. */
  signal?: AbortSignal;
}

export interface ReplayResult {
  transactions: number;
  changes: number;
  /** The latest sequence values carried by a heartbeat. */
  sequences: HeartbeatSequences | undefined;
  /** The sequence values of the first heartbeat after the target, when the archive has one. */
  sequencesAfter: HeartbeatSequences | undefined;
}
