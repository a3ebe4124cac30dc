import { writeFileSync } from 'node:fs';
import { sourceConnection } from '../config/connection';
import { parseXidOption } from '../ops/log-transactions';
import { undoTransaction } from '../ops/undo-sql';
import { PitrError, messageOf } from '../errors';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { withReadRepositories } from './repository-option';

export const undoCommand: Command = {
  name: 'undo',
  summary: 'write SQL that reverses one archived transaction (re-inserts deleted rows, restores updated ones, deletes inserted ones)',
  usage: 'pitr undo --repo REPO --xid N [--source URL] [--output FILE] [--json]',
  examples: [
    'pitr undo --repo /var/lib/pitr/shop --xid 912345 --source postgresql://postgres@db1/shop --output undo-912345.sql',
    'pitr undo --repo gs://backups/shop --xid 912345 --source postgresql://postgres@db1/shop | psql shop',
    'pitr undo --repo /var/lib/pitr/shop --xid 912345 --output undo-912345.sql',
  ],
  async run({ options, out }) {
    const xid = parseXidOption(options.requireString('xid', 'e.g. --xid 912345 (find it with "pitr log")'));
    const output = options.string('output');
    // Only a configured URL (--source or PITR_SOURCE) is used: the archive alone is enough for undo, and
    // the foreign keys it orders by are read only when the user points at the archived database.
    const sourceUrl = options.string('source');
    const source = sourceUrl ? sourceConnection(sourceUrl, 'pitr undo') : undefined;
    const restoreHint = { repo: options.strings('repo'), ...(sourceUrl ? { sourceUrl } : {}) };
    const { result, repositories } = await withReadRepositories(options, async (set) => ({
      result: await undoTransaction(set.repo, xid, { restoreHint, ...(source ? { source } : {}) }),
      repositories: set.usage(),
    }));
    for (const w of result.warnings) {
      process.stderr.write(`pitr: warning: ${w.message}\n`);
    }
    if (output) {
      try {
        writeFileSync(output, result.sql);
      } catch (error) {
        throw new PitrError('Usage', `undo: cannot write ${output}: ${messageOf(error)}`, 'choose a writable --output path');
      }
    }
    if (options.flag('json')) writeJson(out, { ...result, ...(output ? { output } : {}), repositories });
    else if (!output) out.write(result.sql);
    else out.write(`wrote ${result.statements} statement(s) reversing transaction ${result.xid} to ${output}\n`);
    return 0;
  },
};
