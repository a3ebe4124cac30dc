import { verifyRepository } from '../ops/verify';
import { formatBytes } from '../config/units';
import { ErrorKind } from '../errors';
import { parseTimeOption } from '../ops/log-transactions';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { existingRepositoryFrom } from './repository-option';

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check every stored object against its manifest, the segment chain, and what each backup needs',
  usage: 'pitr verify [--repo REPO] [--deep] [--ddl] [--since TIME] [--json]',
  examples: [
    'pitr verify --repo gs://backups/shop',
    'pitr verify --repo /var/lib/pitr/shop --deep --json',
    'pitr verify --repo /var/lib/pitr/shop --ddl',
    "pitr verify --repo gs://backups/shop --since '2026-11-22 00:00+01'",
  ],
  async run({ options, out }) {
    const since = options.string('since');
    const report = await verifyRepository(await existingRepositoryFrom(options), {
      deep: options.flag('deep'),
      ddl: options.flag('ddl'),
      ...(since !== undefined ? { since: parseTimeOption('since', since, 'verify') } : {}),
    });
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = report;
      writeJson(out, doc);
    } else {
      const listed = [...report.problems, ...report.recordedGaps];
      const width = Math.max(0, ...listed.map((p) => p.object.length));
      for (const p of listed) out.write(`${p.status.padEnd(12)} ${p.object.padEnd(width)}  ${p.detail}\n`);
      const checked = `${report.checked.objects} objects, ${formatBytes(report.checked.bytes)} checked${since !== undefined ? ` (what matters from ${since} on)` : ''}`;
      const recorded = report.recordedGaps.length;
      const known =
        recorded > 0 ? `; ${recorded} recorded gap${recorded === 1 ? '' : 's'} (a re-created replication slot): nothing inside can be restored` : '';
      out.write(
        report.ok
          ? `repository ${report.repository} is intact: ${checked}${known}\n`
          : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found in ${report.repository} (${checked})${known}\n`,
      );
    }
    // Exit status 7 (integrity violation) when anything is wrong, after the whole report. A recorded gap
    // with a backup after it is listed but is not wrong: failing for it forever would teach schedules
    // to ignore this command.
    // schema changes that cannot be replayed, and nothing else: the replay error's own status
    if (!report.ok && report.problems.every((p) => p.status === 'unreplayable')) return ErrorKind.Replay;
    return report.ok ? 0 : ErrorKind.Integrity;
  },
};
