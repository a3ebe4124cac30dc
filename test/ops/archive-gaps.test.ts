import type { SegmentManifest } from '../../src/archive/segment-manifest';
import { segmentBaseName } from '../../src/archive/segment-manifest';
import { latestSegmentOf, newSlotCreation, type SlotCreation } from '../../src/archive/slot-creation';
import { formatLsn, parseLsn } from '../../src/pg/lsn';
import { archiveGaps, describeGap } from '../../src/archive/archive-gaps';

/**
 * How slot creation records and segment links become gaps (archive-gaps.ts), on manifests built by hand:
 * the cases a live archive reaches only after rare sequences of events.
 */
const time = (second: number): string => `2026-12-01T10:00:${String(Math.floor(second)).padStart(2, '0')}.000000Z`;

/** A segment holding commits from `first` to `last` (LSNs as numbers), linked to `previous` unless told otherwise. */
function segment(first: number, last: number, previous: SegmentManifest | null, link: 'linked' | 'none' = 'linked'): SegmentManifest {
  const name = segmentBaseName(BigInt(first), BigInt(last + 0x30));
  return {
    format: 1,
    kind: 'segment',
    name,
    systemIdentifier: '1',
    database: 'shop',
    firstCommitLsn: formatLsn(BigInt(first)),
    lastCommitLsn: formatLsn(BigInt(last)),
    endLsn: formatLsn(BigInt(last + 0x30)),
    firstCommitTime: time(first / 0x1000),
    lastCommitTime: time(last / 0x1000),
    transactions: 1,
    changes: { insert: 1, update: 0, delete: 0, truncate: 0, message: 0 },
    tables: [],
    marks: [],
    ddl: 0,
    rawBytes: 1,
    storedBytes: 1,
    sha256: `sha-${name}`,
    previous: previous && link === 'linked' ? { name: previous.name, sha256: previous.sha256 } : null,
    createdAt: time(0),
  };
}

function created(at: number, latest: SegmentManifest | null): SlotCreation {
  return newSlotCreation({
    slot: 'pitr',
    systemIdentifier: '1',
    database: 'shop',
    consistentPoint: formatLsn(BigInt(at)),
    createdAt: time(at / 0x1000),
    latestSegment: latestSegmentOf(latest),
  });
}

const names = (segments: SegmentManifest[]): string[] => segments.map((s) => `${s.name}.json`);
const backup = (at: number): { alignedLsn: string } => ({ alignedLsn: formatLsn(BigInt(at)) });

const a = segment(0x1000, 0x1800, null);
const b = segment(0x2000, 0x2800, a);
const c = segment(0x9000, 0x9800, b, 'none'); // after a re-created slot: a new chain
const d = segment(0xa000, 0xa800, c);
const chain = [a, b, c, d];

test('a fresh archive: the first record names no segment and no backup is older, so nothing is a gap', () => {
  expect(
    archiveGaps({ segmentNames: names(chain.slice(0, 2)), segments: chain.slice(0, 2), creations: [created(0x800, null)], backups: [backup(0x1900)] }),
  ).toEqual([]);
});

test('a re-created slot explains the new chain: one gap from the last commit before it to the slot', () => {
  const record = created(0x8000, b);
  const gaps = archiveGaps({ segmentNames: names(chain), segments: chain, creations: [created(0x800, null), record], backups: [] });
  expect(gaps).toEqual([
    {
      cause: 'slot-recreated',
      slot: 'pitr',
      after: b.name,
      before: c.name,
      fromLsn: b.endLsn,
      toLsn: '0/8000',
      from: { lsn: b.lastCommitLsn, time: b.lastCommitTime },
      to: { lsn: '0/8000', time: record.createdAt },
    },
  ]);
  expect(describeGap(gaps[0] as (typeof gaps)[0])).toBe(
    `from ${b.lastCommitTime} (${b.lastCommitLsn}) to ${record.createdAt} (0/8000): replication slot "pitr" was re-created, nothing committed in between was archived`,
  );
  // without the manifests (what status reads) the same gap, from the record alone
  expect(archiveGaps({ segmentNames: names(chain), creations: [record], backups: [] })).toEqual(gaps);
});

test('without a record the same break is a broken chain; a record does not excuse a wrong link', () => {
  expect(archiveGaps({ segmentNames: names(chain), segments: chain, creations: [], backups: [] })).toEqual([
    expect.objectContaining({ cause: 'broken-chain', after: b.name, before: c.name, fromLsn: b.endLsn, toLsn: c.firstCommitLsn }),
  ]);
  const wrongLink = { ...c, previous: { name: b.name, sha256: 'other' } };
  const segments = [a, b, wrongLink, d];
  const gaps = archiveGaps({ segmentNames: names(segments), segments, creations: [created(0x8000, b)], backups: [] });
  expect(gaps.map((g) => g.cause).sort()).toEqual(['broken-chain', 'slot-recreated']);
});

test('a slot re-created twice before anything was archived: one gap, to the newest slot', () => {
  const gaps = archiveGaps({ segmentNames: names(chain), segments: chain, creations: [created(0x5000, b), created(0x8000, b)], backups: [] });
  expect(gaps).toEqual([expect.objectContaining({ fromLsn: b.endLsn, toLsn: '0/8000' })]);
});

test('nothing archived after the re-created slot yet: the gap has no segment after it', () => {
  const segments = [a, b];
  expect(archiveGaps({ segmentNames: names(segments), segments, creations: [created(0x8000, b)], backups: [] })).toEqual([
    expect.objectContaining({ cause: 'slot-recreated', after: b.name, before: null }),
  ]);
});

test('a record whose segment was pruned describes history no longer kept: no gap', () => {
  const kept = [c, d];
  expect(archiveGaps({ segmentNames: names(kept), segments: kept, creations: [created(0x8000, b)], backups: [] })).toEqual([]);
});

test('a slot created while nothing was archived is a gap for a backup taken before it, from that backup on', () => {
  const segments = [c, d];
  const creations = [created(0x800, null), created(0x8000, null)];
  expect(archiveGaps({ segmentNames: names(segments), segments, creations, backups: [backup(0x9500)] })).toEqual([]);
  const gaps = archiveGaps({ segmentNames: names(segments), segments, creations, backups: [backup(0x1000), backup(0x9500)] });
  expect(gaps).toEqual([expect.objectContaining({ cause: 'slot-recreated', after: null, before: c.name, fromLsn: '0/1000', toLsn: '0/8000', from: null })]);
  expect(parseLsn(gaps[0]?.toLsn ?? '0/0')).toBe(0x8000n);
});
