import { sourceConnection } from '../config/connection';
import { formatBytes } from '../config/units';
import { describeGap } from '../archive/archive-gaps';
import type { Point } from '../ops/list';
import type { ParsedOptions } from '../config/parse-args';
import { archiveStatus, STATUS_UNKNOWN, statusExitCode, type StatusLimits, type StatusReport } from '../ops/status';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoriesFrom } from './repository-option';

const LABEL = { healthy: 'OK', degraded: 'WARNING', broken: 'CRITICAL', unknown: 'UNKNOWN' } as const;

const pointText = (p: Point | null): string => (p ? `${p.time} (${p.lsn})` : '-');

/** A repository's objects and size as `list` gives them; said in words when unknown (unreadable), never a bare "-, -". */
function sizeText(objects: number | null, bytes: number | null): string {
  if (objects === null && bytes === null) return 'objects and size unknown';
  return `${objects === null ? 'objects unknown' : `${objects} objects`}, ${bytes === null ? 'size unknown' : formatBytes(bytes)}`;
}

function humanReport(report: StatusReport): string {
  const { slot, backup } = report;
  const reasons = report.reasons.map((r) => r.message);
  const lines = [`PITR ${LABEL[report.health]} - ${reasons.length > 0 ? reasons.join('; ') : 'archive is healthy'}`];
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
  for (const r of report.repositories ?? [])
    lines.push(
      `repository ${r.name}${r.async ? ' (async)' : ''}: ${
        r.reachable
          ? `newest ${r.newest ? `${r.newest.time} (${r.newest.lsn})` : '-'}, lag ${r.lagSeconds === null ? '-' : `${r.lagSeconds.toFixed(1)}s`} / ${r.lagBytes === null ? '-' : formatBytes(r.lagBytes)}`
          : `unreachable: ${r.error ?? ''}`
      }, ${r.storageClass ?? 'default class'}, ${sizeText(r.objects, r.bytes)}, ${r.location}`,
    );
  for (const reason of report.reasons) lines.push(`reason: ${reason.severity}: ${reason.message}`);
  return lines.join('\n') + '\n';
}

/** The thresholds of `status` and of the archiver's endpoint: warning limits with their defaults, critical ones when given. */
export function statusLimitsFrom(options: ParsedOptions): StatusLimits {
  return {
    maxLag: options.number('max-lag'),
    criticalLag: options.number('critical-lag'),
    maxSlotLag: options.number('max-slot-lag'),
    criticalSlotLag: options.number('critical-slot-lag'),
    maxBackupAge: options.number('max-backup-age'),
    criticalBackupAge: options.number('critical-backup-age'),
    criticalStopped: options.number('critical-stopped'),
  };
}

export const statusCommand: Command = {
  name: 'status',
  summary:
    'check the archive like a monitoring probe (Nagios plugin statuses): RPO, slot, newest backup; exits 0 OK (healthy), 1 WARNING (degraded), 2 CRITICAL (broken), 3 UNKNOWN (could not check: bad usage, unreadable repository)',
  usage:
    'pitr status [--source URL] [--repo REPO] [--slot NAME] [--json] [--max-lag 60s] [--critical-lag 1h] [--max-slot-lag 1GB] [--critical-slot-lag 10GB] [--max-backup-age 48h] [--critical-backup-age 7d] [--critical-stopped 1d]',
  examples: [
    'pitr status --source postgresql://postgres@db1/shop --repo gs://backups/shop',
    'pitr status --repo /var/lib/pitr/shop --json --max-lag 5m --critical-lag 1h --critical-stopped 1d',
  ],
  errorExitCode: STATUS_UNKNOWN,
  async run({ options, out }) {
    const configured = await repositoriesFrom(options);
    const report = await archiveStatus({
      source: sourceConnection(options.string('source'), 'pitr status'),
      slotName: options.string('slot'),
      repo: (configured[0] as (typeof configured)[number]).repo,
      limits: statusLimitsFrom(options),
      // several: the other facts are of the first; each one's lag behind the newest is a reason when too large
      ...(configured.length > 1
        ? {
            members: configured.map((c) => ({
              name: c.spec.name,
              repo: c.repo,
              async: c.spec.async,
              ...(c.spec.storageClass ? { storageClass: c.spec.storageClass } : {}),
            })),
          }
        : {}),
    });
    if (options.flag('json')) writeJson(out, report);
    else out.write(humanReport(report));
    return statusExitCode(report.health);
  },
};
