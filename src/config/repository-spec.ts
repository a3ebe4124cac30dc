import { PitrError } from '../errors';
import { parseDuration } from './units';

/** GCS storage classes (https://cloud.google.com/storage/docs/storage-classes). */
export const STORAGE_CLASSES = ['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE'] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];

/**
 * One repository as --repo (or one comma-separated entry of PITR_REPO) names it: a location, then
 * optionally "?" and settings joined by "&":
 *
 *   /var/lib/pitr?retention=7d
 *   gs://acme-pitr-eu/shop?async&retention=90d&storage-class=NEARLINE&name=eu
 *
 * A local path that itself holds "?" or "," is given as a file:// URL with them escaped (%3F, %2C).
 */
export interface RepositorySpec {
  /** What the user wrote, for messages. */
  text: string;
  /** The location without the settings: a directory path, file:// URL or gs://bucket/prefix. */
  location: string;
  /** How output names this repository: the `name` setting, else "repo1", "repo2", ... in the order given. */
  name: string;
  /**
   * An asynchronous repository does not hold the slot: the archiver acknowledges once every synchronous
   * repository has a segment, and this one catches up from them (its lag is a metric and a status reason).
   */
  async: boolean;
  /** This repository's own retention (overrides --retention for it). */
  retention?: number;
  /** GCS storage class of the objects written (gs:// only). */
  storageClass?: StorageClass;
}

const SETTINGS = ['async', 'retention', 'storage-class', 'name'] as const;

export function parseRepositorySpec(text: string, index: number): RepositorySpec {
  const bad = (what: string, hint: string): never => {
    throw new PitrError('Usage', `invalid repository ${JSON.stringify(text)}: ${what}`, hint);
  };
  const question = text.indexOf('?');
  const location = question === -1 ? text : text.slice(0, question);
  if (location === '') bad('no location before "?"', 'e.g. --repo /var/lib/pitr?retention=7d or --repo gs://bucket/prefix?async');
  const spec: RepositorySpec = { text, location, name: `repo${index + 1}`, async: false };
  if (question === -1) return spec;
  for (const part of text.slice(question + 1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? undefined : decodeURIComponent(part.slice(eq + 1));
    switch (key) {
      case 'async':
        if (value !== undefined && !/^(true|false|1|0|yes|no|on|off)$/i.test(value)) bad(`async=${value}`, 'write "async" (or async=false)');
        spec.async = value === undefined || /^(true|1|yes|on)$/i.test(value);
        break;
      case 'retention': {
        const ms = value === undefined ? undefined : parseDuration(value);
        if (ms === undefined) bad(`retention=${value ?? ''}`, 'expected a duration such as 7d or 90d');
        spec.retention = ms;
        break;
      }
      case 'storage-class': {
        const upper = (value ?? '').toUpperCase();
        if (!(STORAGE_CLASSES as readonly string[]).includes(upper)) bad(`storage-class=${value ?? ''}`, `expected one of ${STORAGE_CLASSES.join(', ')}`);
        if (!location.startsWith('gs://')) bad('storage-class applies to gs:// repositories only', 'remove storage-class, or name a gs://bucket/prefix');
        spec.storageClass = upper as StorageClass;
        break;
      }
      case 'name':
        if (value === undefined || !/^[A-Za-z0-9_.-]{1,64}$/.test(value)) bad(`name=${value ?? ''}`, 'expected a name of letters, digits, "_", "." or "-"');
        spec.name = value as string;
        break;
      default:
        bad(`unknown setting "${key}"`, `settings are ${SETTINGS.join(', ')}; a local path holding "?" is given as a file:// URL with %3F`);
    }
  }
  return spec;
}

/** Every --repo given (or PITR_REPO's entries), checked: distinct locations and names. */
export function parseRepositorySpecs(texts: readonly string[]): RepositorySpec[] {
  const specs = texts.map((t, i) => parseRepositorySpec(t, i));
  const seen = new Map<string, string>();
  for (const spec of specs) {
    for (const key of [`location ${spec.location}`, `name ${spec.name}`]) {
      const earlier = seen.get(key);
      if (earlier !== undefined)
        throw new PitrError(
          'Usage',
          `repositories ${JSON.stringify(earlier)} and ${JSON.stringify(spec.text)} have the same ${key.split(' ')[0]}`,
          'name each repository once, with a name of its own',
        );
      seen.set(key, spec.text);
    }
  }
  if (specs.length > 0 && specs.every((s) => s.async))
    throw new PitrError(
      'Usage',
      'every repository is marked async',
      'at least one repository must be synchronous: the slot is acknowledged once those hold a segment',
    );
  return specs;
}
