import { formatBytes } from '../config/units';
import { PitrError } from '../errors';
import { pruneRepository, type PruneReport } from '../ops/prune';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoriesFrom } from './repository-option';

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'remove the backups and segments no longer needed to restore to any point of the retention window',
  usage: 'pitr prune --retention DURATION [--repo REPO[?retention=DURATION]]... [--dry-run] [--json]',
  examples: ['pitr prune --repo gs://backups/shop --retention 7d', 'pitr prune --repo /var/lib/pitr/shop --retention 30d --dry-run --json'],
  async run({ options, out, log }) {
    const retentionMs = options.number('retention');
    const configured = await repositoriesFrom(options);
    // each repository by its own ?retention=, else --retention
    const lacking = configured.find((c) => (c.spec.retention ?? retentionMs) === undefined);
    if (lacking)
      throw new PitrError(
        'Usage',
        configured.length > 1
          ? `prune: repository ${lacking.spec.name} has no retention: give it ?retention= or give --retention`
          : 'prune: --retention is required: how far back restores must stay possible',
        'give a duration such as --retention 7d (or set PITR_RETENTION), or per repository as --repo LOCATION?retention=7d',
      );
    const dryRun = options.flag('dry-run');
    const reports: { name: string; retentionMs: number; report: PruneReport }[] = [];
    for (const { spec, repo } of configured) {
      const keep = (spec.retention ?? retentionMs) as number;
      const named = configured.length > 1 ? log.child({ repository: spec.name }) : log;
      reports.push({ name: spec.name, retentionMs: keep, report: await pruneRepository(repo, { retentionMs: keep, dryRun, log: named }) });
    }
    const first = reports[0] as (typeof reports)[number];
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = first.report;
      const each = reports.map(({ name, retentionMs: keep, report: { repository, ...rest } }) => ({
        name,
        location: repository,
        retentionSeconds: keep / 1000,
        ...rest,
      }));
      // the top level is the first repository's (as with one); `repositories` has every one's
      writeJson(out, configured.length > 1 ? { ...doc, repositories: each } : doc);
      return 0;
    }
    const lines: string[] = [];
    for (const { name, report } of reports) {
      if (configured.length > 1) lines.push(`repository ${name} (${report.repository}):`);
      lines.push(...reportLines(report, dryRun));
    }
    out.write(lines.join('\n') + '\n');
    return 0;
  },
};

function reportLines(report: PruneReport, dryRun: boolean): string[] {
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
  return lines;
}
