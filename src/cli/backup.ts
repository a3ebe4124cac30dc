import { runBackup } from '../backup/run-backup';
import { sourceConnection } from '../config/connection';
import { formatBytes } from '../config/units';
import { isoMicros } from '../pg/pg-time';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { copyBackupInto } from '../ops/copy';
import { repositoriesFrom } from './repository-option';

export const backupCommand: Command = {
  name: 'backup',
  summary: 'take a base backup now, aligned exactly to a position of the change stream',
  usage: 'pitr backup --source URL [--repo REPO] [--jobs N] [--chunk-size SIZE] [--pg-dump PATH] [--json]',
  examples: [
    'pitr backup --source postgresql://postgres@db1/shop --repo gs://backups/shop --jobs 4',
    'PITR_SOURCE=postgresql://postgres@db1/shop pitr backup --repo /var/lib/pitr/shop --json',
  ],
  async run({ options, log, out, signal }) {
    const source = sourceConnection(options.string('source'), 'pitr backup');
    const pgDump = options.string('pg-dump');
    const spoolDir = options.string('spool-dir');
    const started = Date.now();
    const [first, ...others] = await repositoriesFrom(options, 'write');
    const repo = (first as NonNullable<typeof first>).repo;
    const manifest = await runBackup(
      { repo, source, log, signal },
      {
        jobs: options.number('jobs'),
        chunkBytes: options.number('chunk-size'),
        ...(pgDump ? { pgDump } : {}),
        ...(spoolDir ? { spoolDir } : {}),
      },
    );
    // several --repo: taken once into the first, then copied (checked, parts before the manifest) into each other
    const stored = [{ name: (first as NonNullable<typeof first>).spec.name, location: repo.storage.location }];
    for (const other of others) {
      await copyBackupInto(repo, other.repo, manifest.id, { transfers: options.number('jobs'), log, signal });
      stored.push({ name: other.spec.name, location: other.repo.storage.location });
    }
    const seconds = (Date.now() - started) / 1000;
    if (options.flag('json')) {
      writeJson(out, {
        id: manifest.id,
        alignedLsn: manifest.alignedLsn,
        startTime: isoMicros(manifest.startTime),
        endTime: isoMicros(manifest.endTime),
        seconds,
        ...manifest.totals,
        ...(others.length > 0 ? { repositories: stored } : {}),
      });
    } else {
      out.write(
        `backup ${manifest.id} complete: aligned at ${manifest.alignedLsn}, ${manifest.totals.tables} tables, ${manifest.totals.rows} rows, ` +
          `${formatBytes(manifest.totals.rawBytes)} copied, ${formatBytes(manifest.totals.storedBytes)} stored, ${seconds.toFixed(1)} s\n`,
      );
      if (others.length > 0) out.write(`stored in ${stored.map((r) => `${r.name} (${r.location})`).join(', ')}\n`);
    }
    return 0;
  },
};
