/**
 * The index's building blocks without a database: superseded names, pages that grow by merging, and
 * catalog writers racing each other (each change lands, none overwrites another).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mapBounded } from '../../src/archive/bounded-map';
import { mergeTrailingPages, storePagesFor } from '../../src/archive/index-builder';
import { readNewestCatalog, storePage, updateCatalog } from '../../src/archive/index-catalog-store';
import { Repository } from '../../src/archive/repository';
import type { SegmentManifest } from '../../src/archive/segment-manifest';
import { liveSegmentNames } from '../../src/archive/segment-names';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { writeHeartbeatSegments } from '../harness/heartbeat-segments';

const identity = { systemIdentifier: '7310000000000000002', database: 'shop' };
let dir: string;
let repo: Repository;
let segments: SegmentManifest[];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'pitr-catalog-'));
  repo = new Repository(new LocalStorage(path.join(dir, 'repo')));
  segments = await writeHeartbeatSegments({
    previous: null,
    identity,
    firstLsn: 0x2000000n,
    firstTime: 1_790_000_000_000_000n,
    count: 300,
    spoolDir: dir,
    store: async (name, data) => void (await repo.storage.put(name, { kind: 'buffer', data })),
  });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('a compacted segment supersedes the segments inside its range', () => {
  const names = [
    'segments/00000000/0000000000000100-0000000000000200.json',
    'segments/00000000/0000000000000100-0000000000000600.json', // compacted: 100..600
    'segments/00000000/0000000000000300-0000000000000400.json',
    'segments/00000000/0000000000000500-0000000000000600.json',
    'segments/00000000/0000000000000700-0000000000000800.json',
  ];
  expect(liveSegmentNames(names)).toEqual([names[1], names[4]]);
  expect(liveSegmentNames([names[0] as string, names[2] as string])).toEqual([names[0], names[2]]);
});

test('pages built in one go have the shape of pages grown segment by segment', async () => {
  const { pages, rest } = await storePagesFor(repo, segments);
  expect(pages.map((p) => p.level)).toEqual([1, 0, 0]); // 256 + 16 + 16 of 300
  expect(rest).toHaveLength(12);
  let grown: Awaited<ReturnType<typeof storePage>>[] = [];
  for (let at = 0; at + 16 <= segments.length; at += 16)
    grown = await mergeTrailingPages(repo, [...grown, await storePage(repo, 0, segments.slice(at, at + 16))]);
  expect(grown.map((p) => p.page)).toEqual(pages.map((p) => p.page));
});

test('writers racing on the catalog: every change lands on top of the others', async () => {
  const pages = await mapBounded(
    Array.from({ length: 8 }, (_, i) => segments.slice(i * 16, i * 16 + 16)),
    (run) => storePage(repo, 0, run),
  );
  await Promise.all(pages.map((page) => updateCatalog(repo, identity, (current) => [...(current?.pages ?? []), page])));
  const { catalog } = await readNewestCatalog(repo);
  expect(new Set(catalog?.pages.map((p) => p.page))).toEqual(new Set(pages.map((p) => p.page)));
  expect(catalog?.sequence).toBe(8);
});
