import { formatBytes } from '../config/units';
import { PitrError } from '../errors';
import { pruneRepository } from '../ops/prune';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoryFrom } from './repository-option';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'remove the backups and segments no longer needed to restore to any point of the retention window',
  usage: 'pitr prune --retention DURATION [--repo REPO] [--dry-run] [--json]',
  examples: ['pitr prune --repo gs://backups/shop --retention 7d', 'pitr prune --repo /var/lib/pitr/shop --retention 30d --dry-run --json'],
  async run({ options, out, log }) {
    const retentionMs = options.number('retention');
    if (retentionMs === undefined)
      throw new PitrError(
        'Usage',
        'prune: --retention is required: how far back restores must stay possible',
        'give a duration such as --retention 7d (or set PITR_RETENTION)',
      );
    const dryRun = options.flag('dry-run');
    const report = await pruneRepository(await repositoryFrom(options), { retentionMs, dryRun, log });
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = report;
      writeJson(out, doc);
      return 0;
    }
    const { removed, keptFrom } = report;
    const lines: string[] = [];
    if (!keptFrom) lines.push(`repository ${report.repository} has no complete base backup: nothing removed`);
    else {
      lines.push(`window starts ${report.windowStart}; kept from backup ${keptFrom.backup} (aligned ${keptFrom.alignedLsn}, ended ${keptFrom.endTime})`);
      const verb = dryRun ? 'would remove' : 'removed';
      const parts = [plural(removed.backups.length, 'backup'), plural(removed.segments, 'segment')];
      if (removed.incompleteBackups.length > 0) parts.push(plural(removed.incompleteBackups.length, 'incomplete backup'));
      if (removed.orphanSegmentData > 0) parts.push(plural(removed.orphanSegmentData, 'unreferenced segment data object'));
      lines.push(`${verb} ${parts.join(', ')}: ${formatBytes(removed.bytes)} ${dryRun ? 'would be ' : ''}freed`);
      for (const id of removed.backups) lines.push(`  backup ${id}`);
      for (const id of removed.incompleteBackups) lines.push(`  incomplete backup ${id}`);
      if (dryRun) lines.push('dry run: nothing was changed');
    }
    out.write(lines.join('\n') + '\n');
    return 0;
  },
};
