import { BackupSchedule } from '../backup/backup-schedule';
import { Archiver } from '../capture/archiver';
import { sourceConnection } from '../config/connection';
import { parseListenAddress } from '../config/listen-address';
import { AsyncRepositoryFeed } from '../ops/async-repository-feed';
import { copyBackupInto } from '../ops/copy';
import { PruneSchedule } from '../ops/prune-schedule';
import { levelLateTarget, levelTargets } from '../ops/target-catch-up';
import type { Command } from './command';
import { repositoriesFrom } from './repository-option';
import { statusLimitsFrom } from './status';

export const archiveCommand: Command = {
  name: 'archive',
  summary: 'stream every committed change into the repository until stopped (SIGTERM/SIGINT)',
  usage:
    'pitr archive --source URL [--repo REPO] [--segment-size SIZE] [--segment-age DURATION] [--heartbeat DURATION] [--backup-every DURATION] [--retention DURATION] [--listen HOST:PORT] [--lease-ttl DURATION] [--takeover]',
  examples: [
    'pitr archive --source postgresql://postgres@db1/shop --repo gs://backups/shop --listen 127.0.0.1:9187',
    'PITR_SOURCE=postgresql://postgres@db1/shop pitr archive --repo /var/lib/pitr/shop --segment-age 500ms --backup-every 24h --retention 7d',
  ],
  async run({ options, log, signal }) {
    const sourceUrl = options.string('source');
    const source = sourceConnection(sourceUrl, 'pitr archive');
    const listenText = options.string('listen');
    const listen = listenText === undefined ? undefined : parseListenAddress(listenText, 'archive');
    const spoolDir = options.string('spool-dir');
    const pgDump = options.string('pg-dump');
    const backupEvery = options.number('backup-every');
    const retentionMs = options.number('retention');
    const slot = options.string('slot');
    // several --repo: every synchronous one holds each segment before the slot moves past it; async ones follow
    const configured = await repositoriesFrom(options, 'write');
    const synchronous = configured.filter((c) => !c.spec.async);
    const repo = (synchronous[0] ?? (configured[0] as (typeof configured)[number])).repo;
    const leaseOptions = { ttlMs: options.number('lease-ttl'), takeover: options.flag('takeover') };

    let archiver: Archiver | undefined;
    // Bound before streaming starts, so a busy port fails at once and leaves the slot alone. Loaded only
    // when asked for: the metrics library slows every start.
    const endpoint = listen
      ? await (
          await import('../ops/archive-endpoint.js')
        ).openArchiveEndpoint({
          address: listen,
          source: sourceConnection(sourceUrl, 'pitr status'),
          slotName: slot,
          repo,
          members: configured.map((c) => ({
            name: c.spec.name,
            repo: c.repo,
            async: c.spec.async,
            ...(c.spec.storageClass ? { storageClass: c.spec.storageClass } : {}),
          })),
          limits: statusLimitsFrom(options),
          log,
          archiverState: () => archiver?.status.state ?? 'starting',
        })
      : undefined;
    try {
      // pruning starts inside the archiver, once it has checked that the repository is this source's
      // each repository by its own retention (its ?retention=, else --retention)
      const pruning = configured.flatMap(({ spec, repo: each }) => {
        const keep = spec.retention ?? retentionMs;
        const named = configured.length > 1 ? log.child({ repository: spec.name }) : log;
        return keep === undefined ? [] : [new PruneSchedule(each, keep, named, () => endpoint?.metrics.failed('prune'))];
      });
      const others = configured.filter((c) => c.repo !== repo);
      const backups =
        backupEvery === undefined
          ? undefined
          : new BackupSchedule(
              repo,
              source,
              log,
              backupEvery,
              {
                jobs: options.number('jobs'),
                chunkBytes: options.number('chunk-size'),
                ...(pgDump ? { pgDump } : {}),
                ...(spoolDir ? { spoolDir } : {}),
              },
              () => endpoint?.metrics.failed('backup'),
              slot,
              // a backup is complete in a repository once its manifest is there: parts first, copied from the first
              others.length === 0
                ? undefined
                : async (manifest) => {
                    for (const other of others) await copyBackupInto(repo, other.repo, manifest.id, { transfers: 4, log });
                  },
            );
      const replicas = configured
        .filter((c) => c.spec.async)
        .map(
          (c) =>
            new AsyncRepositoryFeed({
              name: c.spec.name,
              repo: c.repo,
              lease: leaseOptions,
              log,
              ...(endpoint ? { observer: endpoint.metrics } : {}),
            }),
        );
      archiver = new Archiver(
        synchronous.map((c) => ({ name: c.spec.name, repo: c.repo })),
        source,
        log,
        {
          slot,
          publication: options.string('publication'),
          segmentBytes: options.number('segment-size'),
          segmentAgeMs: options.number('segment-age'),
          heartbeatMs: options.number('heartbeat'),
          uploadConcurrency: options.number('upload-concurrency'),
          ...(spoolDir ? { spoolDir } : {}),
          ...(endpoint ? { observer: endpoint.metrics } : {}),
          alongside: [backups, ...pruning].filter((work) => work !== undefined),
          lease: leaseOptions,
          replicas,
          levelTargets,
          levelLateTarget,
        },
      );
      await archiver.run(signal);
    } finally {
      // after the drain: the endpoint shows "draining" until the last segment is stored
      await endpoint?.close();
      // uploads abandoned at a stop may still be retrying inside the storage client: they must not keep the process
      setTimeout(() => process.exit(), 2_000).unref();
    }
    return 0;
  },
};
