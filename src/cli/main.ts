import { readFileSync } from 'node:fs';
import path from 'node:path';
import { passwordOnCommandLineWarning } from '../config/connection';
import { parseArgs } from '../config/parse-args';
import { PitrError, isPitrError, messageOf } from '../errors';
import { createLogger } from '../logger';
import { archiveCommand } from './archive';
import { backupCommand } from './backup';
import type { Command } from './command';
import { commandHelp, generalHelp } from './help';
import { writeJson } from '../ops/json-document';
import { completionCommand } from './completion';
import { demoCommand } from './demo';
import { initCommand } from './init';
import { listCommand } from './list';
import { logCommand } from './log';
import { drillCommand } from './drill';
import { pruneCommand } from './prune';
import { compactCommand } from './compact';
import { copyCommand } from './copy';
import { undoCommand } from './undo';
import { markCommand } from './mark';
import { restoreCommand } from './restore';
import { statusCommand } from './status';
import { verifyCommand } from './verify';

const COMMANDS: Command[] = [
  initCommand,
  archiveCommand,
  statusCommand,
  backupCommand,
  restoreCommand,
  markCommand,
  listCommand,
  verifyCommand,
  logCommand,
  undoCommand,
  pruneCommand,
  compactCommand,
  copyCommand,
  drillCommand,
  demoCommand,
  completionCommand(() => COMMANDS),
];

/**
 * A reader that closed stdout (`pitr log | head -n 2`) wants no more: stop quietly with status 0, as
 * other command-line tools do. Any other write error on stdout is a real failure.
 */
function endQuietlyOnClosedPipe(error: NodeJS.ErrnoException): void {
  if (error.code === 'EPIPE') process.exit(0);
  process.stderr.write(`pitr: error: cannot write to standard output: ${error.message}\n`);
  process.exit(1);
}

/** Entry point: dispatch only. Sets process.exitCode from the command or the error's kind. */
export async function main(argv: string[]): Promise<void> {
  process.stdout.on('error', endQuietlyOnClosedPipe);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(generalHelp(COMMANDS));
    return;
  }
  if (name === '--version') {
    const { version } = JSON.parse(readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as { version: string };
    process.stdout.write(`${version}\n`);
    return;
  }
  const command = COMMANDS.find((c) => c.name === name);
  let json = rest.includes('--json');
  try {
    if (!command) throw new PitrError('Usage', `unknown command "${name}"`, `commands: ${COMMANDS.map((c) => c.name).join(', ')}; see "pitr --help"`);
    const options = parseArgs(command.name, rest);
    json = options.flag('json');
    if (options.flag('help')) {
      process.stdout.write(commandHelp(command));
      return;
    }
    const passwordWarning = passwordOnCommandLineWarning(
      (['source', 'target'] as const)
        .filter((name) => options.givenOnCommandLine(name))
        .map((name) => ({ flag: `--${name}`, value: options.string(name) ?? '' })),
    );
    if (passwordWarning) process.stderr.write(`pitr: warning: ${passwordWarning}\n`);
    const log = createLogger(options.string('log-level'));
    const controller = new AbortController();
    const stop = (signal: string): void => {
      if (controller.signal.aborted) {
        log.warn({ event: 'signal', signal }, 'second signal: exiting now; nothing half-done is kept (the archiver acknowledges only what it stored)');
        process.exit(130);
      }
      log.info({ event: 'signal', signal }, 'stopping');
      controller.abort();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.exitCode = await command.run({ options, log, out: process.stdout, signal: controller.signal });
  } catch (error) {
    const pitrError = isPitrError(error)
      ? error
      : new PitrError('Internal', `internal error: ${messageOf(error)}`, 'please report this with the log above', { cause: error });
    const exitCode = command?.errorExitCode ?? pitrError.exitCode;
    if (json) {
      writeJson(process.stdout, {
        error: { kind: pitrError.kind, code: exitCode, message: pitrError.message, hint: pitrError.hint ?? null, ...pitrError.details },
      });
    }
    process.stderr.write(`pitr: error: ${pitrError.message}\n${pitrError.hint ? `hint: ${pitrError.hint}\n` : ''}`);
    if (pitrError.kind === 'Internal' && process.env.PITR_DEBUG && error instanceof Error) process.stderr.write(`${error.stack ?? ''}\n`);
    process.exitCode = exitCode;
  }
}
