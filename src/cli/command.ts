import type { ParsedOptions } from '../config/parse-args';
import type { Logger } from '../logger';

/** What every command gets: parsed options, a logger, and where human output goes. */
export interface CommandContext {
  options: ParsedOptions;
  log: Logger;
  out: NodeJS.WritableStream;
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  examples: string[];
  /** The exit status of every failure instead of its kind's code: `status` is a probe, for which any failure means "could not check". */
  errorExitCode?: number;
  /** Returns the exit status (0 on success); failures throw PitrError. */
  run(context: CommandContext): Promise<number>;
}
