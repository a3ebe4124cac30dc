import type { Logger } from '../logger';
import { formatLsn, parseLsn, type Lsn } from '../pg/lsn';
import { readPage, storePage, updateCatalog } from './index-catalog-store';
import type { SourceIdentity } from './index-builder';
import type { PageSummary } from './index-format';
import type { Repository } from './repository';
import { crashPoint } from './crash-point';

/**
 * Before `pitr prune` removes the segments whose first commit is before `firstKept`, the index stops
 * naming them: pages wholly before it are dropped from the catalog, the page that straddles it is
 * stored again with the kept segments only. A crash after this leaves segments no index names, before
 * its start: readers ignore them, and the next prune removes them.
 */
export async function trimIndex(repo: Repository, identity: SourceIdentity, firstKept: Lsn, log?: Logger): Promise<void> {
  await updateCatalog(
    repo,
    identity,
    async (current) => {
      const pages: PageSummary[] = [];
      if (!current) return pages; // a catalog all the same, so the archiver does not index what is being removed
      let changed = false;
      for (const page of current.pages) {
        if (parseLsn(page.first.firstCommitLsn) >= firstKept) pages.push(page);
        else if (parseLsn(page.last.firstCommitLsn) < firstKept) changed = true;
        else {
          const kept = (await readPage(repo, page.page)).segments.filter((m) => parseLsn(m.firstCommitLsn) >= firstKept);
          pages.push(await storePage(repo, page.level, kept));
          crashPoint('index:trimmed-page-stored');
          changed = true;
        }
      }
      return changed || current.from === null || parseLsn(current.from) < firstKept ? pages : null;
    },
    log,
    formatLsn(firstKept),
  );
}
