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
  /** Returns the exit status (0 on success); failures throw PitrError. */
  run(context: CommandContext): Promise<number>;
}
