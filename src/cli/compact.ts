import { formatBytes } from '../config/units';
import { compactRepository } from '../ops/compact';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoryFrom } from './repository-option';

export const compactCommand: Command = {
  name: 'compact',
  summary: 'merge old small segments into large ones (lossless: every archived commit stays a restore target), and keep the index whole',
  usage: 'pitr compact [--repo REPO] [--older-than DURATION] [--compact-size SIZE] [--rebuild-index] [--dry-run] [--json]',
  examples: ['pitr compact --repo gs://backups/shop', 'pitr compact --repo /var/lib/pitr/shop --older-than 7d --dry-run'],
  async run({ options, out, log }) {
    const report = await compactRepository(await repositoryFrom(options), {
      olderThanMs: options.number('older-than'),
      maxRawBytes: options.number('compact-size'),
      dryRun: options.flag('dry-run'),
      rebuildIndex: options.flag('rebuild-index'),
      log,
    });
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = report;
      writeJson(out, doc);
      return 0;
    }
    const m = report.merged;
    const lines = [
      `repository ${report.repository}`,
      m.sources === 0
        ? 'nothing to compact'
        : `${report.dryRun ? 'would merge' : 'merged'} ${m.sources} segments into ${m.into} (${formatBytes(m.rawBytes)} of changes, ${formatBytes(m.storedBytesBefore)} stored${report.dryRun ? '' : ` before, ${formatBytes(m.storedBytesAfter)} after`})`,
    ];
    if (report.indexRebuilt) lines.push('index rebuilt from the segment manifests');
    if (report.leftoversRemoved > 0) lines.push(`removed ${report.leftoversRemoved} objects an interrupted compaction left`);
    if (report.dryRun) lines.push('dry run: nothing was changed');
    out.write(lines.join('\n') + '\n');
    return 0;
  },
};
