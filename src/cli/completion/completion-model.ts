import { optionsFor, type OptionSpec } from '../../config/options';
import { LOG_OPS } from '../../ops/log-transactions';
import type { Command } from '../command';

/** The shells `pitr completion` writes scripts for. */
export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

/** What a shell offers after a flag that takes a value. */
export type ValueCompletion = { kind: 'files' } | { kind: 'dirs' } | { kind: 'words'; words: readonly string[] } | { kind: 'none' };

/** One command as completion sees it: its flags from the option declarations, and fixed positional words. */
export interface CompletionEntry {
  name: string;
  summary: string;
  options: OptionSpec[];
  positionals: readonly string[];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export function valueCompletion(option: OptionSpec): ValueCompletion {
  if (option.name === 'op') return { kind: 'words', words: LOG_OPS };
  if (option.name === 'log-level') return { kind: 'words', words: LOG_LEVELS };
  // a repository may be a local directory; gs:// URLs are typed out
  if (option.arg === 'FILE' || option.arg === 'PATH' || option.arg === 'REPO') return { kind: 'files' };
  if (option.arg === 'DIR' || option.arg === 'DIRS') return { kind: 'dirs' };
  return { kind: 'none' };
}

export function completionModel(commands: readonly Pick<Command, 'name' | 'summary'>[]): CompletionEntry[] {
  return commands.map((command) => ({
    name: command.name,
    summary: command.summary,
    options: optionsFor(command.name),
    positionals: command.name === 'completion' ? SHELLS : [],
  }));
}
