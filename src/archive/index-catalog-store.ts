import { PitrError, isPitrError } from '../errors';
import type { Logger } from '../logger';
import { decodeCheckedJson, encodeCheckedJson } from './checked-json';
import {
  CATALOG_PREFIX,
  INDEX_FORMAT,
  catalogName,
  pageName,
  sequenceOfCatalogName,
  summarizePage,
  type IndexCatalog,
  type IndexPage,
  type PageSummary,
} from './index-format';
import type { Storage } from '../storage/storage';
import type { SegmentManifest } from './segment-manifest';
import { crashPoint } from './crash-point';

/** What the index is stored in: a repository's storage (the repository itself depends on this module). */
interface IndexHolder {
  readonly storage: Storage;
}

/** Catalogs kept behind the newest, so a reader that listed an older one can still read it. */
const CATALOGS_KEPT = 3;

export interface CatalogRead {
  catalog: IndexCatalog | null;
  /** Why there is no usable catalog: none stored, or the newest is damaged (readers then scan the segments). */
  problem?: string;
  /** The highest catalog number stored when it was read (0 for none): a writer stores the next one. */
  newestSequence: number;
}

/** The newest catalog. A damaged newest catalog is not replaced by an older one: it may name segments removed since. */
export async function readNewestCatalog(repo: IndexHolder): Promise<CatalogRead> {
  for (let attempt = 0; ; attempt++) {
    const { objects } = await repo.storage.list(CATALOG_PREFIX);
    const names = objects.map((o) => o.name).filter((n) => sequenceOfCatalogName(n) !== undefined);
    const newest = names[names.length - 1];
    if (newest === undefined) return { catalog: null, newestSequence: 0 };
    const newestSequence = sequenceOfCatalogName(newest) ?? 0;
    try {
      const catalog = decodeCheckedJson<IndexCatalog>(await repo.storage.read(newest), newest);
      if (catalog.kind !== 'index-catalog' || catalog.sequence !== newestSequence || catalog.format > INDEX_FORMAT)
        return { catalog: null, problem: `index catalog ${newest} is not a catalog of this format`, newestSequence };
      return { catalog, newestSequence };
    } catch (error) {
      // removed by a writer between our listing and our read: list again
      if (isPitrError(error, 'NotFound') && attempt < 3) continue;
      if (isPitrError(error, 'Integrity')) return { catalog: null, problem: `index catalog ${newest} is damaged`, newestSequence };
      throw error;
    }
  }
}

export async function readPage(repo: IndexHolder, name: string): Promise<IndexPage> {
  const page = decodeCheckedJson<IndexPage>(await repo.storage.read(name), name);
  if (page.kind !== 'index-page')
    throw new PitrError(
      'Integrity',
      `index page ${name} is not an index page`,
      'the index is only a cache of the segments: rebuild it with "pitr compact --rebuild-index"',
    );
  return page;
}

/** Stores a page (create-only; its name carries a digest of its content) and returns its summary. */
export async function storePage(repo: IndexHolder, level: number, segments: readonly SegmentManifest[]): Promise<PageSummary> {
  const page: IndexPage = { format: INDEX_FORMAT, kind: 'index-page', level, segments: [...segments] };
  const body = encodeCheckedJson(page);
  const name = pageName(segments, body);
  await repo.storage.put(name, { kind: 'buffer', data: body });
  return summarizePage(name, level, segments);
}

/**
 * Replaces the catalog: `change` gets the newest one (null when there is none) and returns the new list
 * of pages, or null to leave it. Stored as the next number, create-only: when another writer (the
 * archiver, `pitr compact`, `pitr prune`) got there first, the change is made again on top of its catalog.
 */
export async function updateCatalog(
  repo: IndexHolder,
  identity: { systemIdentifier: string; database: string },
  change: (current: IndexCatalog | null) => Promise<PageSummary[] | null> | PageSummary[] | null,
  log?: Logger,
  from?: string,
): Promise<IndexCatalog | null> {
  for (let attempt = 0; ; attempt++) {
    const { catalog: current, newestSequence } = await readNewestCatalog(repo);
    const pages = await change(current);
    if (pages === null) return current;
    // the number after the newest seen when the change was made on it: a writer that raced another
    // collides with it (a damaged newest catalog is superseded the same way)
    const sequence = newestSequence + 1;
    const next: IndexCatalog = {
      format: INDEX_FORMAT,
      kind: 'index-catalog',
      sequence,
      systemIdentifier: identity.systemIdentifier,
      database: identity.database,
      from: from ?? current?.from ?? null,
      pages,
    };
    try {
      await repo.storage.put(catalogName(sequence), { kind: 'buffer', data: encodeCheckedJson(next) });
    } catch (error) {
      if (isPitrError(error, 'Integrity') && attempt < 20) {
        log?.debug({ event: 'index_catalog_raced', sequence }, 'another writer stored the index catalog first; trying again on top of it');
        continue;
      }
      throw error;
    }
    crashPoint('index:catalog-stored');
    await removeOldIndexObjects(repo, next);
    return next;
  }
}

/**
 * Catalogs older than the last few, then the pages only they named (replaced by a merge, compaction or
 * prune). A page stored but not yet named by any catalog (another writer between its two puts) is never
 * touched.
 */
async function removeOldIndexObjects(repo: IndexHolder, newest: IndexCatalog): Promise<void> {
  const { objects } = await repo.storage.list(CATALOG_PREFIX);
  const older = objects.map((o) => o.name).filter((n) => (sequenceOfCatalogName(n) ?? Infinity) < newest.sequence);
  const kept = older.slice(-(CATALOGS_KEPT - 1));
  const dropped = older.slice(0, older.length - kept.length);
  if (dropped.length === 0) return;
  const named = new Set(newest.pages.map((p) => p.page));
  for (const name of kept) for (const p of (await readCatalogQuietly(repo, name))?.pages ?? []) named.add(p.page);
  const unnamed = new Set<string>();
  for (const name of dropped) for (const p of (await readCatalogQuietly(repo, name))?.pages ?? []) if (!named.has(p.page)) unnamed.add(p.page);
  for (const page of unnamed) await repo.storage.remove(page);
  for (const name of dropped) await repo.storage.remove(name);
}

async function readCatalogQuietly(repo: IndexHolder, name: string): Promise<IndexCatalog | undefined> {
  try {
    return decodeCheckedJson<IndexCatalog>(await repo.storage.read(name), name);
  } catch {
    return undefined; // unreadable or already gone: it keeps nothing
  }
}
