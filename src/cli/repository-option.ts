import { Repository } from '../archive/repository';
import { repositoryStorage } from '../archive/repository-encryption';
import { keyringFrom } from '../config/encryption-keys';
import { RepositorySet } from '../archive/repository-set';
import type { ParsedOptions } from '../config/parse-args';
import { parseRepositorySpecs, type RepositorySpec } from '../config/repository-spec';
import { PitrError } from '../errors';
import { openStorage, type OpenStorageOptions } from '../storage/open-storage';

/** A repository --repo names, opened, with the settings given after its location. */
export interface ConfiguredRepository {
  spec: RepositorySpec;
  repo: Repository;
}

/**
 * Every repository --repo (repeated) or PITR_REPO (comma-separated) names, opened, in the order given.
 * A command that writes says on stderr where it writes when neither was given, as the default
 * location is relative to the current directory.
 */
export async function repositoriesFrom(options: ParsedOptions, use: 'read' | 'write' = 'read'): Promise<ConfiguredRepository[]> {
  const configured: ConfiguredRepository[] = [];
  for (const spec of repositorySpecsFrom(options)) configured.push({ spec, repo: await openRepository(options, spec, use) });
  if (use === 'write' && options.isDefault('repo'))
    process.stderr.write(`pitr: no --repo or PITR_REPO given: using the repository at ${configured[0]?.repo.storage.location ?? ''}\n`);
  return configured;
}

/** The repository one location option names (copy's --from and --into), opened as --repo's are. */
export async function repositoryNamedBy(options: ParsedOptions, name: 'from' | 'into'): Promise<Repository> {
  const value = options.string(name);
  if (value === undefined) throw new PitrError('Usage', `--${name} is required`, 'pitr copy --from REPO --into REPO');
  const [spec] = parseRepositorySpecs([value]);
  return openRepository(options, spec as RepositorySpec, name === 'into' ? 'write' : 'read');
}

/** A repository's storage, encrypted when the repository is (or a key is given for a new one): archive/repository-encryption.ts. */
async function openRepository(options: ParsedOptions, spec: RepositorySpec, use: 'read' | 'write'): Promise<Repository> {
  const storage = await openStorage(spec.location, storageOptions(spec, options.string('gcs-endpoint')));
  return new Repository(await repositoryStorage(storage, keyringFrom(options), use));
}

function storageOptions(spec: RepositorySpec, endpoint: string | undefined): OpenStorageOptions {
  return { ...(endpoint ? { gcsEndpoint: endpoint } : {}), ...(spec.storageClass ? { storageClass: spec.storageClass } : {}) };
}

/** The first repository --repo (or PITR_REPO) names (see `repositoriesFrom`). */
export async function repositoryFrom(options: ParsedOptions, use: 'read' | 'write' = 'read'): Promise<Repository> {
  const [first] = await repositoriesFrom(options, use);
  return (first as ConfiguredRepository).repo;
}

/** The repositories --repo (repeated) or PITR_REPO (comma-separated) name, with their settings. */
export function repositorySpecsFrom(options: ParsedOptions): RepositorySpec[] {
  return parseRepositorySpecs(options.strings('repo'));
}

/** The repository for a command that only reads one: refuses a location that holds none (a mistyped --repo). */
export async function existingRepositoryFrom(options: ParsedOptions): Promise<Repository> {
  const repo = await repositoryFrom(options);
  if (!(await repo.identity()))
    throw new PitrError(
      'Repository',
      `no repository at ${repo.storage.location} (it holds no repository.json)`,
      'check --repo or PITR_REPO; "pitr init" or "pitr backup" creates a repository',
    );
  return repo;
}

/**
 * Every repository --repo names, as one for a command that reads (restore, log, undo, drill, list): each
 * object from the first repository with an intact copy of it (archive/repository-set.ts). With several,
 * says on stderr which were read from, also when `fn` fails.
 */
export async function withReadRepositories<T>(options: ParsedOptions, fn: (set: RepositorySet) => Promise<T>): Promise<T> {
  const configured = await repositoriesFrom(options);
  const set = await RepositorySet.open(
    configured.map(({ spec, repo }) => ({ name: spec.name, storage: repo.storage, ...(spec.storageClass ? { storageClass: spec.storageClass } : {}) })),
    (message) => process.stderr.write(`pitr: warning: ${message}\n`),
  );
  try {
    return await fn(set);
  } finally {
    await set.close();
    if (set.members.length > 1) process.stderr.write(`pitr: ${set.describeUsage()}\n`);
  }
}
