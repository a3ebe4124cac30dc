import { sourceConnection } from '../config/connection';
import { initSource } from '../ops/init-source';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { repositoriesFrom } from './repository-option';

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
    // several --repo: each is checked, then each claimed and given the slot's creation record
    const configured = await repositoriesFrom(options, 'write');
    const { summary, backupCommand } = await initSource({
      source,
      repos: configured.map(({ spec, repo }) => ({ name: spec.name, repo })),
      slot: options.string('slot'),
      publication: options.string('publication'),
      applyFixes: options.flag('apply-fixes'),
      takeover: options.flag('takeover'),
      json: options.flag('json'),
      log,
      stderr: process.stderr,
    });
    if (options.flag('json')) writeJson(out, summary);
    else {
      out.write(`source ${summary.source} (PostgreSQL ${summary.serverVersion}, system ${summary.systemIdentifier}) is ready for archiving\n`);
      for (const item of summary.created) out.write(`  created  ${item}\n`);
      for (const item of summary.existing) out.write(`  exists   ${item}\n`);
      if (summary.repositories) for (const each of summary.repositories) out.write(`  repository ${each.name} ${each.location}\n`);
      else out.write(`  repository ${summary.repository}\n`);
      for (const warning of summary.warnings) out.write(`  warning: ${warning}\n`);
      out.write(`next: pitr archive --source ... ${configured.map(({ spec }) => `--repo ${shellWord(spec.text)}`).join(' ')}\n`);
      if (summary.gap) out.write(`then at once: ${backupCommand}\n`);
    }
    return 0;
  },
};

/** A repository as a shell takes it: settings joined by "&" quoted. */
function shellWord(text: string): string {
  return /[&;|<>()$`\s]/.test(text) ? `'${text.replace(/'/g, `'\\''`)}'` : text;
}
