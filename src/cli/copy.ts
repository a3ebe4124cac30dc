import { formatBytes } from '../config/units';
import { ErrorKind } from '../errors';
import { copyRepository } from '../ops/copy';
import { writeJson } from '../ops/json-document';
import type { Command } from './command';
import { repositoryNamedBy } from './repository-option';

export const copyCommand: Command = {
  name: 'copy',
  summary: 'copy a repository into another, incrementally, checking every checksum (a new region, new storage, a lagging copy)',
  usage: 'pitr copy --from REPO --into REPO [--transfers N] [--json]',
  examples: [
    'pitr copy --from gs://backups/shop --into gs://backups-eu/shop',
    'pitr copy --from /var/lib/pitr/shop --into gs://backups/shop --transfers 8 --json',
  ],
  async run({ options, out, log, signal }) {
    const from = await repositoryNamedBy(options, 'from');
    const into = await repositoryNamedBy(options, 'into');
    const report = await copyRepository(from, into, { transfers: options.number('transfers'), log, signal });
    if (options.flag('json')) writeJson(out, report);
    else {
      const problems = [...report.refused.map((p) => ({ ...p, status: 'refused' })), ...report.differs.map((p) => ({ ...p, status: 'differs' }))];
      const width = Math.max(0, ...problems.map((p) => p.object.length));
      for (const p of problems) out.write(`${p.status.padEnd(8)} ${p.object.padEnd(width)}  ${p.detail}\n`);
      const rate = report.seconds > 0 ? ` (${formatBytes(report.copied.bytes / report.seconds)}/s)` : '';
      const lines = [
        `copied ${report.from} into ${report.to} in ${report.seconds.toFixed(1)}s`,
        `  copied:  ${report.copied.objects} objects, ${formatBytes(report.copied.bytes)}${rate}`,
        `  present: ${report.present.objects} objects already in the target, ${formatBytes(report.present.bytes)}`,
      ];
      if (report.refused.length > 0) lines.push(`  refused: ${report.refused.length} objects failing their checksum in the source (not copied)`);
      if (report.differs.length > 0) lines.push(`  differs: ${report.differs.length} objects the target holds with other bytes (left as they are)`);
      if (report.heldBack > 0) lines.push(`  held back: ${report.heldBack} segments after one not copied (the target's chain stays whole)`);
      if (report.gone > 0) lines.push(`  gone: ${report.gone} objects removed from the source while copying (the next run copies what replaced them)`);
      if (report.indexBuilt) lines.push("  the target's index was built from the segments it holds");
      out.write(lines.join('\n') + '\n');
    }
    return report.ok ? 0 : ErrorKind.Integrity;
  },
};
