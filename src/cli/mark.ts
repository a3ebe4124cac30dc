import { EMIT_MARK_SQL } from '../capture/in-band-sql';
import { sourceConnection } from '../config/connection';
import { PitrError } from '../errors';
import { withClient } from '../pg/with-client';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';

export const markCommand: Command = {
  name: 'mark',
  summary: 'put a named restore point into the stream (like pg_create_restore_point)',
  usage: 'pitr mark NAME --source URL [--json]',
  examples: ['pitr mark before-migration-42 --source postgresql://postgres@db1/shop'],
  async run({ options, out }) {
    const name = options.positionals[0];
    if (!name || options.positionals.length > 1) throw new PitrError('Usage', 'mark: expected exactly one NAME', 'e.g. pitr mark before-upgrade');
    const source = sourceConnection(options.string('source'), 'pitr mark');
    const lsn = await withClient(source, async (client) => (await client.query<{ lsn: string }>(EMIT_MARK_SQL, [name])).rows[0]?.lsn ?? '');
    if (options.flag('json')) writeJson(out, { mark: name, lsn });
    else out.write(`restore point "${name}" written at ${lsn}\n`);
    return 0;
  },
};
