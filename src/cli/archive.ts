import { Archiver } from '../capture/archiver';
import { sourceConnection } from '../config/connection';
import type { Command } from './command';
import { repositoryFrom } from './repository-option';

export const archiveCommand: Command = {
  name: 'archive',
  summary: 'stream every committed change into the repository until stopped (SIGTERM/SIGINT)',
  usage: 'pitr archive --source URL [--repo REPO] [--segment-size SIZE] [--segment-age DURATION] [--heartbeat DURATION] [--backup-every DURATION]',
  examples: [
    'pitr archive --source postgresql://postgres@db1/shop --repo gs://backups/shop',
    'PITR_SOURCE=postgresql://postgres@db1/shop pitr archive --repo /var/lib/pitr/shop --segment-age 500ms --backup-every 24h',
  ],
  async run({ options, log, signal }) {
    const source = sourceConnection(options.string('source'), 'pitr archive');
    const spoolDir = options.string('spool-dir');
    const pgDump = options.string('pg-dump');
    const backupEvery = options.number('backup-every');
    const archiver = new Archiver(await repositoryFrom(options), source, log, {
      slot: options.string('slot') as string,
      publication: options.string('publication') as string,
      segmentBytes: options.number('segment-size') as number,
      segmentAgeMs: options.number('segment-age') as number,
      heartbeatMs: options.number('heartbeat') as number,
      uploadConcurrency: options.number('upload-concurrency') as number,
      ...(spoolDir ? { spoolDir } : {}),
      ...(backupEvery
        ? {
            backups: {
              everyMs: backupEvery,
              options: {
                jobs: options.number('jobs') as number,
                chunkBytes: options.number('chunk-size') as number,
                ...(pgDump ? { pgDump } : {}),
                ...(spoolDir ? { spoolDir } : {}),
              },
            },
          }
        : {}),
    });
    await archiver.run(signal);
    return 0;
  },
};
