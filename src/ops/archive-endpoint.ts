import type { Repository } from '../archive/repository';
import type { ArchiverState } from '../capture/archiver';
import type { SourceConnection } from '../config/connection';
import type { ListenAddress } from '../config/listen-address';
import type { Logger } from '../logger';
import { ArchiveMetrics } from './archive-metrics';
import { MetricsServer } from './metrics-server';
import type { StatusMember } from './repository-lag';
import type { StatusLimits } from './status';
import { StatusProbe } from './status-probe';

/** A status report is reused for this long: scrapes and probes every second cost the source one query per 5 s. */
const STATUS_MAX_AGE_MS = 5_000;
/** Under Prometheus's default 10 s scrape timeout, so a stuck source shows as broken rather than as a failed scrape. */
const STATUS_DEADLINE_MS = 8_000;

export interface ArchiveEndpointOptions {
  address: ListenAddress;
  /** A connection of its own for the status checks (never the archiver's replication session). */
  source: SourceConnection;
  slotName: string;
  repo: Repository;
  /** Several repositories: each one's lag is part of the status (status.ts), and of the metrics. */
  members?: readonly StatusMember[];
  limits: StatusLimits;
  log: Logger;
  archiverState: () => ArchiverState;
}

export interface ArchiveEndpoint {
  /** Feed it to the archiver (and the prune schedule) as their observer. */
  metrics: ArchiveMetrics;
  address: ListenAddress;
  close(): Promise<void>;
}

/** The HTTP endpoint of `pitr archive --listen`: metrics, health and status, bound before the archiver starts. */
export async function openArchiveEndpoint(options: ArchiveEndpointOptions): Promise<ArchiveEndpoint> {
  const probe = new StatusProbe(
    {
      source: options.source,
      slotName: options.slotName,
      repo: options.repo,
      limits: options.limits,
      ...(options.members && options.members.length > 1 ? { members: options.members } : {}),
    },
    { maxAgeMs: STATUS_MAX_AGE_MS, deadlineMs: STATUS_DEADLINE_MS },
    () => metrics.failed('status'), // called on a later scrape, never before metrics exists
  );
  const metrics = new ArchiveMetrics(probe, options.archiverState);
  if (options.members && options.members.length > 1) metrics.knowRepositories(options.members.map((m) => m.name));
  const server = await MetricsServer.listen(options.address, metrics, probe, options.log);
  return { metrics, address: server.address, close: () => server.close() };
}
