import { optionsFor } from '../config/options';
import type { Command } from './command';

export function commandHelp(command: Command): string {
  const lines = [`${command.summary}`, '', `Usage: ${command.usage}`, '', 'Options:'];
  for (const option of optionsFor(command.name)) {
    const flag = `--${option.name}${option.arg ? ` ${option.arg}` : ''}`;
    const extra = [option.env ? `env ${option.env}` : '', option.default !== undefined ? `default ${option.default}` : ''].filter(Boolean).join(', ');
    lines.push(`  ${flag.padEnd(28)} ${option.description}${extra ? ` (${extra})` : ''}`);
  }
  if (command.examples.length) lines.push('', 'Examples:', ...command.examples.map((e) => `  ${e}`));
  return lines.join('\n') + '\n';
}

export function generalHelp(commands: Command[]): string {
  const lines = ['pitr: continuous logical archiving and point-in-time recovery for PostgreSQL', '', 'Usage: pitr <command> [options]', '', 'Commands:'];
  const width = Math.max(...commands.map((c) => c.name.length));
  for (const command of commands) lines.push(`  ${command.name.padEnd(width)}  ${command.summary}`);
  lines.push(
    '',
    'New here? "pitr demo" rehearses archiving and a recovery on a throwaway PostgreSQL, showing each command.',
    'Run "pitr <command> --help" for the options of a command.',
    'Exit codes: 0 ok, 1 internal error, 2 bad usage, 3 source not fit, 4 cannot connect, 5 repository problem, 6 already running, 7 integrity violation, 8 missing tool, 9 not found, 130 interrupted; status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.',
  );
  return lines.join('\n') + '\n';
}
