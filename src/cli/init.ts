import { checkNewWriter } from '../capture/new-writer-checks';
import { prepareSource } from '../capture/prepare-source';
import { checkSource, sourceFacts } from '../capture/source-checks';
import { connectSource, identifySystem } from '../pg/connect';
import { sourceConnection } from '../config/connection';
import { newestBackup } from '../archive/backup-catalog';
import { latestSegmentOf, newSlotCreation, storeSlotCreation, type SlotCreation } from '../archive/slot-creation';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import { PitrError } from '../errors';
import { withTransaction } from '../pg/with-client';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoryFrom } from './repository-option';

export const initCommand: Command = {
  name: 'init',
  summary: 'check the source and prepare it for archiving (publication, slot, DDL capture), idempotently',
  usage: 'pitr init --source URL [--repo REPO] [--slot NAME] [--publication NAME] [--apply-fixes] [--takeover] [--json]',
  examples: [
    'pitr init --source postgresql://postgres@db1:5432/shop --repo gs://backups/shop',
    'PGHOST=db1 PGDATABASE=shop pitr init --repo /var/lib/pitr/shop',
  ],
  async run({ options, log, out }) {
    const source = sourceConnection(options.string('source'), 'pitr init');
    const slot = options.string('slot') as string;
    const publication = options.string('publication') as string;
    const repo = await repositoryFrom(options);
    const client = await connectSource(source.config, source.display);
    try {
      let failures = await checkSource(client, slot);
      const fixable = failures.filter((failure) => failure.apply !== undefined);
      if (fixable.length > 0 && options.flag('apply-fixes')) {
        // table fixes take effect at once; the others (settings needing a restart, role attributes) stay printed
        await withTransaction(client, async () => {
          for (const failure of fixable) await client.query(failure.apply as string);
        });
        for (const failure of fixable) {
          log.info({ event: 'fix_applied', sql: failure.apply }, `applied: ${failure.apply}`);
          process.stderr.write(`pitr: applied: ${failure.apply}\n`);
        }
        failures = await checkSource(client, slot);
      }
      if (failures.length > 0) {
        for (const failure of failures) process.stderr.write(`pitr: check failed: ${failure.problem}\n  fix: ${failure.fix}\n`);
        throw new PitrError(
          'SourceConfig',
          `${failures.length} check${failures.length > 1 ? 's' : ''} failed on ${source.display}; nothing was changed`,
          failures.some((failure) => failure.apply !== undefined)
            ? 'apply the fixes above (pitr init --apply-fixes applies the table fixes) and run "pitr init" again'
            : 'apply the fixes above and run "pitr init" again',
        );
      }
      const facts = await sourceFacts(client);
      const system = await identifySystem(source.config, source.display);
      await repo.storage.checkWritable();
      const existing = await repo.identity();
      if (existing && (existing.systemIdentifier !== system.systemIdentifier || existing.database !== system.database)) await repo.claim(system); // throws the clear error
      // read before the slot exists: nothing can be archived for it in between
      const latest = await checkNewWriter(repo, { system, display: source.display }, slot, options.flag('takeover'), log);
      const hadBackups = (await newestBackup(repo)) !== undefined;
      let record: SlotCreation | undefined;
      const result = await prepareSource(
        client,
        { slot, publication },
        log,
        () => connectSource(source.config, source.display),
        async (created) => {
          await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
          record = newSlotCreation({
            slot,
            systemIdentifier: system.systemIdentifier,
            database: system.database,
            consistentPoint: formatLsn(created.consistentPoint),
            createdAt: formatUnixMicros(created.createdAt),
            latestSegment: latestSegmentOf(latest),
          });
          await storeSlotCreation(repo, record);
        },
      );
      await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
      const backupCommand = `pitr backup --source ${source.display} --repo ${repo.storage.location}`;
      const gap = record ? slotGap(record, hadBackups, backupCommand) : null;
      const warnings: string[] = [];
      if (gap) warnings.push(gap.warning);
      if (facts.largeObjects > 0)
        warnings.push(`${facts.largeObjects} large object(s) found: large objects are not carried by logical decoding and are not archived`);
      for (const warning of warnings) log.warn({ event: 'warning' }, warning);
      const summary = {
        source: source.display,
        repository: repo.storage.location,
        systemIdentifier: system.systemIdentifier,
        database: system.database,
        serverVersion: facts.serverVersion,
        slot,
        publication,
        created: result.created,
        existing: result.existing,
        slotCreation: record ?? null,
        gap: gap && { from: gap.from, to: gap.to },
        warnings,
      };
      log.info({ event: 'initialized', ...summary }, 'source prepared');
      if (options.flag('json')) writeJson(out, summary);
      else {
        out.write(`source ${source.display} (PostgreSQL ${facts.serverVersion}, system ${system.systemIdentifier}) is ready for archiving\n`);
        for (const item of result.created) out.write(`  created  ${item}\n`);
        for (const item of result.existing) out.write(`  exists   ${item}\n`);
        out.write(`  repository ${repo.storage.location}\n`);
        for (const warning of warnings) out.write(`  warning: ${warning}\n`);
        out.write(`next: pitr archive --source ... --repo ${options.string('repo')}\n`);
        if (gap) out.write(`then at once: ${backupCommand}\n`);
      }
      return 0;
    } finally {
      await client.end().catch(() => undefined);
    }
  },
};

/**
 * What a slot created while the repository already held an archive means: everything committed after
 * the newest archived commit and before the new slot's consistent point is lost to the archive.
 */
function slotGap(
  record: SlotCreation,
  hadBackups: boolean,
  backupCommand: string,
): { from: { lsn: string; time: string } | null; to: { lsn: string; time: string }; warning: string } | null {
  const to = { lsn: record.consistentPoint, time: record.createdAt };
  const latest = record.latestSegment;
  if (latest) {
    const from = { lsn: latest.lastCommitLsn, time: latest.lastCommitTime };
    return {
      from,
      to,
      warning:
        `the archive has a gap from its last archived commit, ${from.time} (${from.lsn}), to the new slot's start, ${to.time} (${to.lsn}): ` +
        `transactions committed in between were not archived and nothing in that gap can be restored; ` +
        `start the archiver and take a new base backup now: ${backupCommand}`,
    };
  }
  if (!hadBackups) return null;
  return {
    from: null,
    to,
    warning:
      `the repository holds base backups but no archived transactions: those backups cannot be replayed past the new slot's start, ${to.time} (${to.lsn}); ` +
      `start the archiver and take a new base backup now: ${backupCommand}`,
  };
}
