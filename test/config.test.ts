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
