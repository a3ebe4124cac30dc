import { checkConnectionString, sourceConnection } from '../config/connection';
import { runDrill, type DrillReport } from '../ops/drill';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { withReadRepositories } from './repository-option';

function human(report: DrillReport): string {
  const lines: string[] = [];
  const last = report.lastApplied
    ? `last applied commit ${report.lastApplied.commitLsn} at ${report.lastApplied.commitTime}`
    : 'no transaction after the backup';
  lines.push(`drill into ${report.target}: backup ${report.backup.id}, ${report.restore.resolved}; ${last}`);
  lines.push(
    `RTO (restore time): ${report.rtoSeconds.toFixed(1)} s (load ${report.restore.seconds.load.toFixed(1)} s, replay ${report.restore.seconds.replay.toFixed(1)} s); ` +
      `RPO (now − last applied commit): ${report.rpoSeconds.toFixed(1)} s`,
  );
  const width = Math.max(5, ...report.tables.map((t) => t.name.length));
  for (const t of report.tables) {
    const status = t.ok ? 'ok' : 'MISMATCH';
    const rows = t.rows === null ? 'missing' : String(t.rows);
    const source = t.sourceMatches === undefined ? '' : t.sourceMatches ? '  (same as source)' : '  (differs from source)';
    lines.push(`  ${status.padEnd(8)} ${t.name.padEnd(width)}  expected ${t.expectedRows}, restored ${rows}${t.note ? `  (${t.note})` : ''}${source}`);
  }
  if (report.source) lines.push(report.source.note);
  lines.push(report.kept ? 'scratch database kept' : 'scratch database dropped');
  const failed = report.tables.filter((t) => !t.ok).length;
  lines.push(report.ok ? `drill passed: ${report.tables.length} table(s) checked` : `drill FAILED: ${failed} of ${report.tables.length} table(s) do not match`);
  return lines.join('\n') + '\n';
}

export const drillCommand: Command = {
  name: 'drill',
  summary: 'rehearse a recovery: restore into a scratch database, check every table and its row count, report RTO and RPO',
  usage: 'pitr drill --repo REPO --target URL [--to TARGET] [--keep] [--source URL] [--json]',
  examples: [
    'pitr drill --repo /var/lib/pitr/shop --target postgresql://postgres@localhost/pitr_drill',
    'pitr drill --repo gs://backups/shop --target postgresql://postgres@db2/drill --to mark:before-migration --keep --json',
  ],
  async run({ options, log, out }) {
    const targetUrl = options.requireString('target', 'e.g. --target postgresql://postgres@localhost/pitr_drill (a new or empty database)');
    checkConnectionString(targetUrl);
    const to = options.string('to') || 'latest';
    const sourceUrl = options.string('source');
    const { report, repositories } = await withReadRepositories(options, async (set) => ({
      report: await runDrill(
        set.repo,
        {
          targetUrl,
          to,
          keep: options.flag('keep'),
          ...(sourceUrl ? { source: sourceConnection(sourceUrl, 'pitr drill') } : {}),
        },
        log,
      ),
      repositories: set.usage(),
    }));
    if (options.flag('json')) writeJson(out, { ...report, repositories });
    else out.write(human(report));
    return report.ok ? 0 : 7;
  },
};
