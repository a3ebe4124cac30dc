import { PitrError } from '../errors';
import {
  OPTIONS,
  optionsFor,
  type FlagOptionName,
  type NumberOptionName,
  type OptionName,
  type OptionSpec,
  type OptionValueOf,
  type StringOptionName,
} from './options';
import { parseBytes, parseDuration } from './units';

export type OptionValue = string | number | boolean;

/**
 * Parsed options of one command: flags first, then environment, then defaults. Each accessor takes only
 * the names of options declared with its type, and its return type follows from the declaration in
 * options.ts: an option with a default is never undefined, so no caller repeats a default.
 */
export class ParsedOptions {
  constructor(
    readonly command: string,
    private readonly values: Map<string, OptionValue>,
    readonly positionals: string[],
    private readonly fromCommandLine: ReadonlySet<string> = new Set(),
    private readonly defaulted: ReadonlySet<string> = new Set(),
    private readonly lists: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {}

  /** Every value of a repeatable option, in the order given (a default is one value). */
  strings(name: StringOptionName): string[] {
    const list = this.lists.get(name);
    if (list) return [...list];
    const value = this.values.get(name);
    return value === undefined ? [] : [String(value)];
  }

  /** True when the value is the option's default: neither a flag nor its environment variable gave one. */
  isDefault(name: OptionName): boolean {
    return this.defaulted.has(name);
  }

  /** Whether the value was given as a flag (visible in `ps`), not taken from the environment or a default. */
  givenOnCommandLine(name: OptionName): boolean {
    return this.fromCommandLine.has(name);
  }

  has(name: OptionName): boolean {
    return this.values.has(name);
  }

  string<N extends StringOptionName>(name: N): OptionValueOf<N> {
    const value = this.values.get(name);
    return (value === undefined ? undefined : String(value)) as OptionValueOf<N>;
  }

  requireString(name: StringOptionName, hint: string): string {
    const value = this.string(name);
    if (value === undefined || value === '') throw new PitrError('Usage', `${this.command}: --${name} is required`, hint);
    return value;
  }

  /** Durations and sizes are stored as numbers: milliseconds and bytes. */
  number<N extends NumberOptionName>(name: N): OptionValueOf<N> {
    const value = this.values.get(name);
    return (typeof value === 'number' ? value : undefined) as OptionValueOf<N>;
  }

  flag(name: FlagOptionName): boolean {
    return this.values.get(name) === true;
  }
}

function convert(command: string, spec: OptionSpec, raw: string, from: string): OptionValue {
  const fail = (expected: string): never => {
    throw new PitrError('Usage', `${command}: invalid value for ${from}: ${spec.secret ? '(hidden)' : JSON.stringify(raw)}`, `expected ${expected}`);
  };
  let value: OptionValue;
  switch (spec.type) {
    case 'string':
    case 'url':
      return raw;
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      return fail('true or false');
    case 'integer':
      if (!/^\d+$/.test(raw)) return fail('a whole number');
      value = Number(raw);
      break;
    case 'duration':
      value = parseDuration(raw) ?? fail('a duration such as 500ms, 10s, 5m, 24h or 7d');
      break;
    case 'bytes':
      value = parseBytes(raw) ?? fail('a size such as 512kB, 16MB or 1GB');
      break;
    default: {
      const never: never = spec.type;
      throw new Error(`unknown option type ${String(never)}`);
    }
  }
  if (spec.min !== undefined && value < spec.min) fail(`at least ${spec.min}`);
  return value;
}

export function parseArgs(command: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedOptions {
  const specs = optionsFor(command);
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, OptionValue>();
  const positionals: string[] = [];
  const defaulted = new Set<string>();
  const lists = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h') {
      values.set('help', true);
      continue;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new PitrError('Usage', `${command}: unknown option --${name}`, `run "pitr ${command} --help" for the options it takes`);
    let raw: string;
    if (eq !== -1) raw = arg.slice(eq + 1);
    else if (spec.type === 'boolean') raw = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new PitrError('Usage', `${command}: --${name} needs a value`, `e.g. --${name} ${spec.arg ?? 'VALUE'}`);
      raw = next;
      i++;
    }
    const value = convert(command, spec, raw, `--${name}`);
    if (spec.repeatable) {
      const list = lists.get(name) ?? [];
      list.push(String(value));
      lists.set(name, list);
      if (!values.has(name)) values.set(name, value);
    } else values.set(name, value);
  }
  const fromCommandLine = new Set(values.keys());
  for (const spec of specs) {
    if (values.has(spec.name)) continue;
    const fromEnv = spec.env ? env[spec.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== '' && spec.repeatable) {
      const list = fromEnv
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v !== '');
      if (list.length === 0)
        throw new PitrError('Usage', `${command}: ${spec.env as string} names no value`, `e.g. ${spec.env as string}=${spec.arg ?? 'VALUE'}`);
      lists.set(spec.name, list);
      values.set(spec.name, list[0] as string);
    } else if (fromEnv !== undefined && fromEnv !== '') values.set(spec.name, convert(command, spec, fromEnv, spec.env as string));
    else if (spec.default !== undefined) {
      values.set(spec.name, convert(command, spec, spec.default, `default of --${spec.name}`));
      defaulted.add(spec.name);
    }
  }
  // An option the command does not take still reads as its declared default (main reads --log-level for
  // every command), so that the type's promise holds and no caller repeats a default.
  for (const spec of OPTIONS) {
    if (!values.has(spec.name) && !byName.has(spec.name) && spec.default !== undefined)
      values.set(spec.name, convert(command, spec, spec.default, `default of --${spec.name}`));
  }
  return new ParsedOptions(command, values, positionals, fromCommandLine, defaulted, lists);
}
