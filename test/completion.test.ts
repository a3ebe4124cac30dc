import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OPTIONS, optionsFor } from '../src/config/options';
import { runPitr } from './harness/pitr-process';

let dir: string;
let bashScript: string;
let zshScript: string;
let commands: string[];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pitr-completion-'));
  const help = await runPitr(['--help']);
  commands = [...help.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1] as string);
  const bash = await runPitr(['completion', 'bash']);
  const zsh = await runPitr(['completion', 'zsh']);
  expect([bash.code, zsh.code]).toEqual([0, 0]);
  bashScript = path.join(dir, 'pitr.bash');
  zshScript = path.join(dir, '_pitr');
  writeFileSync(bashScript, bash.stdout);
  writeFileSync(zshScript, zsh.stdout);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What bash offers for the command line `words`, the last word being completed. */
function complete(...words: string[]): string[] {
  const line = words.map((w) => `'${w}'`).join(' ');
  const script = `source '${bashScript}'; COMP_WORDS=(${line}); COMP_CWORD=${words.length - 1}; _pitr 2>/dev/null; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const result = spawnSync('bash', ['-c', script], { encoding: 'utf8', cwd: dir });
  return result.stdout.split('\n').filter(Boolean).sort();
}

describe('pitr completion', () => {
  test('bash completes the commands', () => {
    expect(commands).toContain('demo');
    expect(complete('pitr', '')).toEqual([...commands, 'help', '--help', '--version'].sort());
    expect(complete('pitr', 'de')).toEqual(['demo']);
  });

  test("bash completes each command's declared flags", () => {
    for (const command of commands) {
      const expected = optionsFor(command).map((o) => `--${o.name}`);
      if (command === 'completion') expected.push('bash', 'zsh');
      expect({ command, flags: complete('pitr', command, '') }).toEqual({ command, flags: expected.sort() });
    }
  });

  test('bash completes values: operations, log levels, files', () => {
    expect(complete('pitr', 'log', '--op', 'd')).toEqual(['ddl', 'delete']);
    expect(complete('pitr', 'status', '--log-level', 'w')).toEqual(['warn']);
    writeFileSync(path.join(dir, 'undo-42.sql'), '');
    expect(complete('pitr', 'undo', '--xid', '42', '--output', 'undo-')).toEqual(['undo-42.sql']);
    expect(complete('pitr', 'restore', '--target', '')).toEqual([]);
  });

  test('zsh has every command and flag, with their descriptions', () => {
    const script = spawnSync('cat', [zshScript], { encoding: 'utf8' }).stdout;
    expect(script.startsWith('#compdef pitr\n')).toBe(true);
    for (const command of commands) expect(script).toContain(`'${command}:`);
    for (const option of OPTIONS) expect(script).toContain(`'--${option.name}`);
    // zsh itself is optional on a machine running the tests; when present, the script must parse
    const zsh = spawnSync('zsh', ['-n', zshScript], { encoding: 'utf8' });
    if (!zsh.error) expect(zsh.stderr).toBe('');
  });

  test('an unknown shell is a usage error', async () => {
    const result = await runPitr(['completion', 'fish']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('pitr: error: completion: expected one shell, bash or zsh\nhint: e.g. source <(pitr completion bash)\n');
  });
});
