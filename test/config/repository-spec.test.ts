import { parseArgs } from '../../src/config/parse-args';
import { parseRepositorySpec, parseRepositorySpecs } from '../../src/config/repository-spec';

describe('repository settings', () => {
  test('a bare location has no settings and is named by its place in the list', () => {
    expect(parseRepositorySpec('/var/lib/pitr', 1)).toEqual({ text: '/var/lib/pitr', location: '/var/lib/pitr', name: 'repo2', async: false });
  });

  test('settings after "?": async, retention, storage class, name', () => {
    expect(parseRepositorySpec('gs://acme-eu/shop?async&retention=90d&storage-class=nearline&name=eu', 0)).toEqual({
      text: 'gs://acme-eu/shop?async&retention=90d&storage-class=nearline&name=eu',
      location: 'gs://acme-eu/shop',
      name: 'eu',
      async: true,
      retention: 90 * 86_400_000,
      storageClass: 'NEARLINE',
    });
    expect(parseRepositorySpec('/srv/pitr?async=false&retention=7d', 0)).toMatchObject({ async: false, retention: 7 * 86_400_000 });
  });

  test.each([
    ['/srv/pitr?retention=soon', /retention=soon.*duration/s],
    ['/srv/pitr?storage-class=NEARLINE', /gs:\/\/ repositories only/],
    ['gs://b-1/p?storage-class=FROZEN', /STANDARD, NEARLINE, COLDLINE, ARCHIVE/],
    ['/srv/pitr?colour=blue', /unknown setting "colour"/],
    ['?async', /no location/],
    ['/srv/pitr?name=two words', /name=two words/],
  ])('%s is refused with one line naming what is wrong', (text, pattern) => {
    expect(() => parseRepositorySpec(text, 0)).toThrow(expect.objectContaining({ kind: 'Usage' }) as Error);
    try {
      parseRepositorySpec(text, 0);
    } catch (error) {
      const e = error as { message: string; hint?: string };
      expect(`${e.message} ${e.hint ?? ''}`).toMatch(pattern);
    }
  });

  test('two repositories with one location or one name, or only asynchronous ones, are refused', () => {
    expect(() => parseRepositorySpecs(['/a', '/a?async'])).toThrow(/same location/);
    expect(() => parseRepositorySpecs(['/a?name=x', '/b?name=x'])).toThrow(/same name/);
    expect(() => parseRepositorySpecs(['/a?async', '/b?async'])).toThrow(/every repository is marked async/);
  });

  test('--repo repeats; PITR_REPO separates by commas; a single --repo reads as before', () => {
    expect(parseArgs('list', ['--repo', '/a', '--repo=gs://b-1/p?async']).strings('repo')).toEqual(['/a', 'gs://b-1/p?async']);
    expect(parseArgs('list', ['--repo', '/a', '--repo', '/b']).string('repo')).toBe('/a');
    expect(parseArgs('list', [], { PITR_REPO: '/a, gs://b-1/p?async' }).strings('repo')).toEqual(['/a', 'gs://b-1/p?async']);
    expect(parseArgs('list', [], {}).strings('repo')).toEqual(['./pitr-repo']);
    expect(parseArgs('list', ['--repo', '/x'], { PITR_REPO: '/a,/b' }).strings('repo')).toEqual(['/x']);
  });
});
