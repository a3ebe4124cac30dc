import { OPTIONS, type OptionSpec } from './options';

/**
 * README.md's configuration reference, generated from the option declarations so it cannot drift.
 * `npm run docs:options` rewrites the part of README.md between the two markers; a test fails when
 * they differ.
 */
export const OPTIONS_BEGIN = '<!-- options:begin: generated from src/config/options.ts by "npm run docs:options"; edit there, not here -->';
export const OPTIONS_END = '<!-- options:end -->';

const cell = (text: string): string => text.replace(/\|/g, '\\|');

/** "all" for the commands that work on a repository (those taking --repo), then any others by name. */
function commandsText(option: OptionSpec, repoCommands: readonly string[]): string {
  const all = repoCommands.every((c) => option.commands.includes(c));
  const others = all ? option.commands.filter((c) => !repoCommands.includes(c)) : option.commands;
  return [...(all ? ['all'] : []), ...others.map((c) => `\`${c}\``)].join(', ');
}

export function optionsMarkdown(options: readonly OptionSpec[] = OPTIONS): string {
  const repoCommands = options.find((o) => o.name === 'repo')?.commands ?? [];
  const lines = ['| flag | environment | default | commands | meaning |', '|---|---|---|---|---|'];
  for (const option of options) {
    const flag = `\`--${option.name}${option.arg ? ` ${option.arg}` : ''}\``;
    const env = option.env ? `\`${option.env}\`` : '';
    const fallback = option.default !== undefined ? `\`${option.default}\`` : '';
    lines.push(`| ${flag} | ${env} | ${fallback} | ${commandsText(option, repoCommands)} | ${cell(option.description)} |`);
  }
  lines.push('', `"all": every command that works on a repository (${repoCommands.map((c) => `\`${c}\``).join(', ')}).`);
  return lines.join('\n');
}

/** The text between the markers, or undefined when README.md has no such section. */
export function optionsSection(readme: string): string | undefined {
  const begin = readme.indexOf(OPTIONS_BEGIN);
  const end = readme.indexOf(OPTIONS_END);
  if (begin === -1 || end < begin) return undefined;
  return readme
    .slice(begin + OPTIONS_BEGIN.length, end)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}

/** README.md with the section between the markers replaced by the generated reference. */
export function withOptionsSection(readme: string, options: readonly OptionSpec[] = OPTIONS): string {
  const begin = readme.indexOf(OPTIONS_BEGIN);
  const end = readme.indexOf(OPTIONS_END);
  if (begin === -1 || end < begin) throw new Error(`README.md has no "${OPTIONS_BEGIN}" ... "${OPTIONS_END}" section`);
  return `${readme.slice(0, begin + OPTIONS_BEGIN.length)}\n${optionsMarkdown(options)}\n${readme.slice(end)}`;
}
