import type { Logger } from '../logger';
import { messageOf } from '../errors';
import { parseLsn, type Lsn } from '../pg/lsn';
import { ArchiveView } from './archive-view';
import { storePage, updateCatalog } from './index-catalog-store';
import { PAGE_FANOUT } from './index-format';
import { catalogEndsBefore, mergeTrailingPages, rebuildIndex, type SourceIdentity } from './index-builder';
import type { Repository } from './repository';
import type { SegmentManifest } from './segment-manifest';
import { crashPoint } from './crash-point';

/**
 * Keeps the index up to date beside the archiver: told of every segment stored, in chain order, it
 * stores a level-0 page once PAGE_FANOUT segments are past the catalog, then the next catalog. The
 * index is a cache: this never delays storing or acknowledging segments, a failure is logged and
 * retried with the next segment, and after a crash the segments it had not indexed yet are the tail,
 * indexed on the next start.
 */
export class IndexMaintainer {
  /** Stored segments after the catalog's last page, in chain order. */
  private tail: SegmentManifest[] = [];
  /** The name of the catalog's last segment (null when the catalog is empty), which the tail follows. */
  private indexedLast: string | null = null;
  private newestEnd: Lsn = 0n;
  private work: Promise<void> = Promise.resolve();
  private loaded = false;

  constructor(
    private readonly repo: Repository,
    private readonly identity: SourceIdentity,
    private readonly log: Logger,
  ) {}

  /** Reads where the index ends (building it when missing or damaged). In the background, like all its work. */
  start(): void {
    this.enqueue(() => this.load());
  }

  /** A segment stored (data and manifest), in chain order. */
  stored(manifest: SegmentManifest): void {
    this.enqueue(async () => {
      if (!this.loaded) await this.load();
      if (parseLsn(manifest.endLsn) <= this.newestEnd) return; // already known from the repository
      this.tail.push(manifest);
      this.newestEnd = parseLsn(manifest.endLsn);
      if (this.tail.length >= PAGE_FANOUT) await this.flush();
    });
  }

  /** Waits for the work under way (the archiver's stop). */
  async close(): Promise<void> {
    await this.work;
  }

  private enqueue(step: () => Promise<void>): void {
    this.work = this.work.then(step).catch((error: unknown) => {
      this.loaded = false; // read the repository again next time
      this.log.warn({ event: 'index_failed', error: messageOf(error) }, 'index update failed; the next segment retries it');
    });
  }

  private async load(): Promise<void> {
    let view = await ArchiveView.open(this.repo);
    // fewer segments than a page fill are only a tail: nothing to build yet
    if (view.source.kind === 'scan' && (view.count >= PAGE_FANOUT || (view.source.problem !== undefined && view.count > 0))) {
      this.log.info({ event: 'index_building', reason: view.source.problem ?? 'no index yet', segments: view.count }, 'building the archive index');
      await rebuildIndex(this.repo, this.identity, await view.all(), this.log);
      view = await ArchiveView.open(this.repo);
    }
    const catalog = view.source.catalog;
    const lastPage = catalog?.pages[catalog.pages.length - 1];
    this.indexedLast = lastPage?.last.name ?? null;
    const lastPageEnd = lastPage ? parseLsn(lastPage.last.endLsn) : -1n;
    this.tail = await view.segments({ endAfter: lastPageEnd });
    const newest = view.newest;
    this.newestEnd = newest ? parseLsn(newest.endLsn) : 0n;
    this.loaded = true;
    if (this.tail.length >= PAGE_FANOUT) await this.flush();
  }

  /** Stores full level-0 pages of the tail, then a catalog naming them (merging trailing pages). */
  private async flush(): Promise<void> {
    while (this.tail.length >= PAGE_FANOUT) {
      const run = this.tail.slice(0, PAGE_FANOUT);
      const first = run[0] as SegmentManifest;
      let resync = false;
      let stored: string | undefined;
      await updateCatalog(
        this.repo,
        this.identity,
        async (current) => {
          if (!catalogEndsBefore(current, first, this.indexedLast) && !(current?.pages.length === 0 && current.from !== null)) {
            resync = true; // someone else changed where the index ends (a rebuild): read it again
            return null;
          }
          // what prune is removing is not indexed again
          const from = current?.from ? parseLsn(current.from) : -1n;
          const kept = run.filter((m) => parseLsn(m.firstCommitLsn) >= from);
          if (kept.length === 0) return current?.pages ?? [];
          const page = await storePage(this.repo, 0, kept);
          stored = page.page;
          crashPoint('index:page-stored');
          return mergeTrailingPages(this.repo, [...(current?.pages ?? []), page]);
        },
        this.log,
      );
      if (resync) {
        await this.load();
        continue;
      }
      this.tail = this.tail.slice(PAGE_FANOUT);
      this.indexedLast = (run[run.length - 1] as SegmentManifest).name;
      this.log.debug({ event: 'index_page_stored', page: stored ?? null }, 'index page stored');
    }
  }
}
