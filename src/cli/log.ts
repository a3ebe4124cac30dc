import { logTransactions, formatLogEntry, parseLogOp, parseTimeOption, parseXidOption, type LogFilter } from '../ops/log-transactions';
import { PitrError } from '../errors';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { withReadRepositories } from './repository-option';

export const logCommand: Command = {
  name: 'log',
  summary: 'list archived transactions in commit order: time, xid, LSN, tables and rows changed',
  usage: 'pitr log --repo REPO [--table T] [--op insert|update|delete|truncate|ddl] [--since TIME] [--until TIME] [--xid N] [--rows] [--json]',
  examples: [
    'pitr log --repo /var/lib/pitr/shop --op delete --table public.orders',
    "pitr log --repo gs://backups/shop --since '2026-11-22 10:00' --until '2026-11-22T11:00:00Z'",
    'pitr log --repo /var/lib/pitr/shop --xid 912345 --rows',
  ],
  async run({ options, out }) {
    const table = options.string('table');
    const op = parseLogOp(options.string('op'));
    const since = options.string('since');
    const until = options.string('until');
    const xid = options.string('xid');
    const filter: LogFilter = {
      ...(table ? { table: table.trim() } : {}),
      ...(op ? { op } : {}),
      ...(since !== undefined ? { since: parseTimeOption('since', since) } : {}),
      ...(until !== undefined ? { until: parseTimeOption('until', until) } : {}),
      ...(xid !== undefined ? { xid: parseXidOption(xid) } : {}),
      rows: options.flag('rows'),
    };
    if (filter.since !== undefined && filter.until !== undefined && filter.since > filter.until)
      throw new PitrError('Usage', 'log: --since is after --until', 'swap them');
    const { entries, repositories } = await withReadRepositories(options, async (set) => ({
      ...(await logTransactions(set.repo, filter)),
      repositories: set.usage(),
    }));
    if (options.flag('json')) writeJson(out, { entries, repositories });
    else for (const entry of entries) out.write(formatLogEntry(entry));
    return 0;
  },
};
