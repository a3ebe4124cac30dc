import { checkConnectionString } from '../config/connection';
import { runRestore } from '../restore/run-restore';
import { formatBytes } from '../config/units';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { withReadRepositories } from './repository-option';

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore the database (or some tables) as it was at a point in time, into a target database',
  usage: 'pitr restore --repo REPO --target URL --to TARGET [--exclusive] [--tables LIST] [--jobs N] [--dry-run] [--force] [--json]',
  examples: [
    "pitr restore --repo gs://backups/shop --target postgresql://postgres@db2/shop_at_1041 --to '2026-11-22 10:41:59.5+01'",
    'pitr restore --repo /var/lib/pitr/shop --target postgresql://postgres@localhost/orders_back --to xid:912345 --exclusive --tables public.orders',
    'pitr restore --repo /var/lib/pitr/shop --target postgresql://postgres@localhost/drill --to latest --json',
    'pitr restore --repo gs://backups/shop --target postgresql://postgres@db2/shop_check --to mark:before-migration-42 --dry-run',
  ],
  async run({ options, log, out, signal }) {
    const targetUrl = options.requireString('target', 'e.g. --target postgresql://postgres@localhost/shop_restored');
    const to = options.requireString('to', 'e.g. --to latest, --to "2026-11-22 10:41:59.5", --to xid:N, --to lsn:X/Y, --to mark:NAME');
    checkConnectionString(targetUrl);
    const tables = options.string('tables');
    const pgDump = options.string('pg-dump');
    const { summary, repositories } = await withReadRepositories(options, async (set) => ({
      summary: await runRestore(
        set.repo,
        {
          targetUrl,
          to,
          exclusive: options.flag('exclusive'),
          ...(tables
            ? {
                tables: tables
                  .split(',')
                  .map((t) => t.trim())
                  .filter(Boolean),
              }
            : {}),
          jobs: options.number('jobs'),
          dryRun: options.flag('dry-run'),
          force: options.flag('force'),
          ...(pgDump ? { pgDump } : {}),
          signal,
        },
        log,
      ),
      repositories: set.usage(),
    }));
    if (options.flag('json')) writeJson(out, { ...summary, repositories });
    else if (summary.plan) {
      const plan = summary.plan;
      const count = (n: number): string => n.toLocaleString('en-US');
      const total = plan.estimate.loadSeconds + plan.estimate.replaySeconds;
      out.write(
        `plan for "${summary.database}": up to ${summary.target.resolved}\n` +
          `  backup    ${summary.backup.id}, aligned at ${summary.backup.alignedLsn}: ${count(plan.backup.tables)} tables, ${count(plan.backup.rows)} rows, ${formatBytes(plan.backup.rawBytes)}\n` +
          `  replay    ${count(plan.segments)} segment${plan.segments === 1 ? '' : 's'} (${formatBytes(plan.bytes)} stored): at most ${count(plan.transactions)} transactions, ${count(plan.changes)} changes\n` +
          `  estimate  about ${Math.max(1, Math.round(total))} s (load ${plan.estimate.loadSeconds} s, replay ${plan.estimate.replaySeconds} s, at the speeds measured on a 2-core machine)\n` +
          `recoverable window: ${plan.window.earliest.time} (${plan.window.earliest.lsn}) to ${plan.window.latest.time} (${plan.window.latest.lsn})\n`,
      );
    } else {
      const last = summary.lastApplied
        ? `last applied commit ${summary.lastApplied.commitLsn} at ${summary.lastApplied.commitTime} (xid ${summary.lastApplied.xid})`
        : 'no transaction after the backup';
      out.write(
        `restored "${summary.database}" to ${summary.target.resolved}${summary.resumed ? ' (resumed)' : ''}: backup ${summary.backup.id}, ${summary.transactions} transactions replayed, ${last}; ` +
          `${summary.seconds.total.toFixed(1)} s (load ${summary.seconds.load.toFixed(1)} s, replay ${summary.seconds.replay.toFixed(1)} s)\n`,
      );
    }
    return 0;
  },
};
