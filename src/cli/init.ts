import { prepareSource } from '../capture/prepare-source';
import { checkSource, sourceFacts } from '../capture/source-checks';
import { connectSource, identifySystem } from '../capture/source';
import { sourceConnection } from '../config/connection';
import { PitrError } from '../errors';
import type { Command } from './command';
import { repositoryFrom } from './repository-option';

export const initCommand: Command = {
  name: 'init',
  summary: 'check the source and prepare it for archiving (publication, slot, DDL capture), idempotently',
  usage: 'pitr init --source URL [--repo REPO] [--slot NAME] [--publication NAME] [--json]',
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
      const failures = await checkSource(client, slot);
      if (failures.length > 0) {
        for (const failure of failures) process.stderr.write(`pitr: check failed: ${failure.problem}\n  fix: ${failure.fix}\n`);
        throw new PitrError(
          'SourceConfig',
          `${failures.length} check${failures.length > 1 ? 's' : ''} failed on ${source.display}; nothing was changed`,
          'apply the fixes above and run "pitr init" again',
        );
      }
      const facts = await sourceFacts(client);
      const system = await identifySystem(source.config, source.display);
      await repo.storage.checkWritable();
      const existing = await repo.identity();
      if (existing && (existing.systemIdentifier !== system.systemIdentifier || existing.database !== system.database)) await repo.claim(system); // throws the clear error
      const result = await prepareSource(client, { slot, publication }, log, () => connectSource(source.config, source.display));
      await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
      const warnings: string[] = [];
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
        warnings,
      };
      log.info({ event: 'initialized', ...summary }, 'source prepared');
      if (options.flag('json')) out.write(JSON.stringify(summary, null, 2) + '\n');
      else {
        out.write(`source ${source.display} (PostgreSQL ${facts.serverVersion}, system ${system.systemIdentifier}) is ready for archiving\n`);
        for (const item of result.created) out.write(`  created  ${item}\n`);
        for (const item of result.existing) out.write(`  exists   ${item}\n`);
        out.write(`  repository ${repo.storage.location}\n`);
        for (const warning of warnings) out.write(`  warning: ${warning}\n`);
        out.write(`next: pitr archive --source ... --repo ${options.string('repo')}\n`);
      }
      return 0;
    } finally {
      await client.end().catch(() => undefined);
    }
  },
};
