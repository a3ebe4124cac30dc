import { parseArgs } from '../src/config/parse-args';
import { redactUrl, sourceConnection } from '../src/config/connection';

test('flags win over environment, environment over defaults', () => {
  const env = { PITR_REPO: '/env/repo', PITR_SEGMENT_AGE: '5s' };
  const parsed = parseArgs('archive', ['--repo', '/flag/repo', '--segment-size=1MB'], env);
  expect(parsed.string('repo')).toBe('/flag/repo');
  expect(parsed.number('segment-age')).toBe(5000);
  expect(parsed.number('segment-size')).toBe(1024 * 1024);
  expect(parsed.number('heartbeat')).toBe(10_000);
  expect(parseArgs('archive', [], {}).string('repo')).toBe('./pitr-repo');
});

test('secret values never appear in errors', () => {
  expect(() => parseArgs('init', ['--nope'], {})).toThrow('init: unknown option --nope');
  expect(redactUrl('postgresql://u:hunter2@h:5432/d')).toBe('postgresql://u:****@h:5432/d');
  expect(sourceConnection('postgresql://u:hunter2@h/d', 'x').display).not.toContain('hunter2');
  expect(() => sourceConnection('http://u:hunter2@h/d', 'x')).toThrow(/invalid connection URL http:\/\/u:\*\*\*\*@h\/d/);
});

test("each option's value type follows from its declaration, and a default is read from the declaration alone", () => {
  const parsed = parseArgs('status', [], {});
  // checked by the compiler: an option with a default is never undefined, a duration is a number
  const maxLag: number = parsed.number('max-lag');
  const slot: string = parsed.string('slot');
  const source: string | undefined = parsed.string('source');
  // @ts-expect-error --slot is a string option, not a number
  parsed.number('slot');
  expect([maxLag, slot, source, parsed.number('max-slot-lag'), parsed.number('max-backup-age')]).toEqual([60_000, 'pitr', undefined, 1024 ** 3, 48 * 3600_000]);
  // a command that does not take --log-level (demo) still reads its declared default, and still refuses the flag
  expect(parseArgs('demo', [], {}).string('log-level')).toBe('info');
  expect(() => parseArgs('demo', ['--log-level', 'debug'], {})).toThrow('demo: unknown option --log-level');
});
