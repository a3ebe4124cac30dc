import { OPTIONS } from '../src/config/options';
import { parseArgs } from '../src/config/parse-args';
import { runPitr } from './harness/pitr-process';

/** Splits a shell command line into words: quotes and backslashes as sh reads them, enough for examples. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else word = (word ?? '') + c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === ' ') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else word = (word ?? '') + c;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** The pitr invocation inside an example: inside <(...), before a pipe or a redirection. */
function pitrPart(example: string): { env: string[]; argv: string[] } {
  const inner = /<\((.*)\)/.exec(example)?.[1] ?? example;
  const words = shellWords(inner.split(' | ')[0] as string);
  const redirect = words.indexOf('>');
  if (redirect !== -1) words.splice(redirect);
  const env: string[] = [];
  while (/^[A-Z_][A-Z0-9_]*=/.test(words[0] ?? '')) env.push((words.shift() as string).split('=')[0] as string);
  return { env, argv: words };
}

const DECLARED_ENV = new Set(OPTIONS.flatMap((o) => (o.env ? [o.env] : [])));
const LIBPQ_ENV = new Set(['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE']);

let commands: string[];

beforeAll(async () => {
  const help = await runPitr(['--help']);
  commands = [...help.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1] as string);
  expect(commands.length).toBeGreaterThan(10);
});

describe('pitr <command> --help', () => {
  test('every command shows its usage, options and examples that run as written', async () => {
    for (const command of commands) {
      const help = await runPitr([command, '--help']);
      expect({ command, code: help.code, stderr: help.stderr }).toEqual({ command, code: 0, stderr: '' });
      expect(help.stdout).toContain(`Usage: pitr ${command}`);
      const examples = help.stdout.split('\nExamples:\n')[1]?.split('\n').filter(Boolean) ?? [];
      expect({ command, examples: examples.length > 0 }).toEqual({ command, examples: true });
      for (const example of examples) {
        const { env, argv } = pitrPart(example.trim());
        expect({ example, program: argv[0], command: argv[1] }).toEqual({ example, program: 'pitr', command });
        // flags and values must be ones the command accepts; environment names ones pitr or libpq reads
        expect(() => parseArgs(command, argv.slice(2), {})).not.toThrow();
        for (const name of env) expect({ example, name, known: DECLARED_ENV.has(name) || LIBPQ_ENV.has(name) }).toEqual({ example, name, known: true });
      }
    }
  });

  test('the general help lists every command and points newcomers at the demo', async () => {
    const help = await runPitr(['--help']);
    expect(commands).toEqual(expect.arrayContaining(['init', 'archive', 'status', 'backup', 'restore', 'log', 'undo', 'drill', 'demo', 'completion']));
    expect(help.stdout).toContain('New here? "pitr demo" rehearses archiving and a recovery on a throwaway PostgreSQL');
  });
});
