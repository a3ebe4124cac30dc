import { sourceConnection } from '../config/connection';
import { formatBytes } from '../config/units';
import { describeGap } from '../archive/archive-gaps';
import type { Point } from '../ops/list';
import { archiveStatus, statusExitCode, type StatusReport } from '../ops/status';
import type { Command } from './command';
import { repositoryFrom } from './repository-option';

const LABEL = { healthy: 'OK', degraded: 'WARNING', broken: 'CRITICAL' } as const;

const pointText = (p: Point | null): string => (p ? `${p.time} (${p.lsn})` : '-');

function humanReport(report: StatusReport): string {
  const { slot, backup } = report;
  const lines = [`PITR ${LABEL[report.health]} - ${report.reasons.length > 0 ? report.reasons.join('; ') : 'archive is healthy'}`];
  lines.push(`health: ${report.health}`);
  lines.push(`archiver: ${report.archiver}`);
  lines.push(`rpo: ${report.rpoSeconds === null ? '-' : `${report.rpoSeconds.toFixed(1)}s`}`);
  if (!slot.exists) lines.push(`slot ${slot.name}: -`);
  else
    lines.push(
      `slot ${slot.name}: ${slot.active ? `active (pid ${slot.activePid ?? '-'})` : 'inactive'}, confirmed ${slot.confirmedFlushLsn ?? '-'}, ` +
        `lag ${slot.lagBytes === null ? '-' : formatBytes(slot.lagBytes)}, wal_status ${slot.walStatus ?? '-'}, ` +
        `safe_wal_size ${slot.safeWalSize === null ? '-' : formatBytes(slot.safeWalSize)}`,
    );
  lines.push(`newest backup: ${backup ? `${backup.id}, ended ${backup.endTime}, ${(backup.ageSeconds / 3600).toFixed(1)}h old` : 'none'}`);
  lines.push(`recoverable window: ${pointText(report.window.earliest)} to ${pointText(report.window.latest)}`);
  for (const gap of report.gaps) lines.push(`gap: ${describeGap(gap)}`);
  for (const reason of report.reasons) lines.push(`reason: ${reason}`);
  return lines.join('\n') + '\n';
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'check the archive like a monitoring probe: RPO, slot, newest backup; exits 0 healthy, 1 degraded, 2 broken',
  usage: 'pitr status [--source URL] [--repo REPO] [--slot NAME] [--json] [--max-lag 60s] [--max-slot-lag 1GB] [--max-backup-age 48h]',
  examples: ['pitr status --source postgresql://postgres@db1/shop --repo gs://backups/shop', 'pitr status --repo /var/lib/pitr/shop --json --max-lag 5m'],
  async run({ options, out }) {
    const report = await archiveStatus({
      source: sourceConnection(options.string('source'), 'pitr status'),
      slotName: options.string('slot'),
      repo: await repositoryFrom(options),
      limits: {
        maxLag: options.number('max-lag'),
        maxSlotLag: options.number('max-slot-lag'),
        maxBackupAge: options.number('max-backup-age'),
      },
    });
    out.write(options.flag('json') ? JSON.stringify(report, null, 2) + '\n' : humanReport(report));
    return statusExitCode(report.health);
  },
};
