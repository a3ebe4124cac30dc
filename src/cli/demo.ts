import { defaultPgSearch } from '../demo/find-pg-binaries';
import { runDemo } from '../demo/run-demo';
import type { Command } from './command';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'rehearse archiving and recovery on a throwaway PostgreSQL: an accidental DELETE found, restored and put back',
  usage: 'pitr demo [--keep] [--pg-bin DIRS]',
  examples: ['pitr demo', 'pitr demo --keep', 'pitr demo --pg-bin /usr/lib/postgresql/16/bin'],
  run({ options, out, signal }) {
    const pgBin = options.string('pg-bin');
    const search = pgBin ? { ...defaultPgSearch(), explicitDirs: pgBin.split(':').filter(Boolean) } : defaultPgSearch();
    return runDemo({ keep: options.flag('keep'), search, out, signal });
  },
};
