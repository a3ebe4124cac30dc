import { matchSource } from '../../src/capture/source-match';
import type { SystemIdentity } from '../../src/pg/connect';
import { parseLsn } from '../../src/pg/lsn';
import { parseTimelineHistory } from '../../src/pg/timeline-history';

const owner = { systemIdentifier: '7300000000000000001', database: 'shop' };
const where = { source: 'postgresql://db1/shop', repository: '/var/lib/pitr/shop' };
const server = (fields: Partial<SystemIdentity>): SystemIdentity => ({ ...owner, timeline: 1, xlogPos: '0/5000000', history: [], ...fields });
const end = (stored: string, acknowledged = stored, timeline: number | null = 1) => ({
  storedEndLsn: parseLsn(stored),
  acknowledgedLsn: parseLsn(acknowledged),
  timeline,
});

test('timeline history files: one switch per line, comments and blank lines skipped', () => {
  expect(parseTimelineHistory('1\t0/3000360\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-12-01\n# comment\n')).toEqual([
    { timeline: 1, switchpoint: parseLsn('0/3000360') },
    { timeline: 2, switchpoint: parseLsn('0/5000000') },
  ]);
});

test('the same server, at or ahead of the archive; or anything when the archive is empty', () => {
  expect(matchSource(server({}), owner, end('0/4000000'), where)).toEqual({ kind: 'same' });
  expect(matchSource(server({ xlogPos: '0/4000000' }), owner, end('0/4000000'), where)).toEqual({ kind: 'same' });
  expect(matchSource(server({ timeline: 7 }), owner, null, where)).toEqual({ kind: 'same' });
  // segments from before timelines were recorded: compared on position only
  expect(matchSource(server({ timeline: 3 }), owner, end('0/4000000', '0/4000000', null), where)).toEqual({ kind: 'same' });
});

test('another system or database is a replaced server', () => {
  expect(() => matchSource(server({ systemIdentifier: '7300000000000000002' }), owner, null, where)).toThrow(
    /^source postgresql:\/\/db1\/shop is not the database repository \/var\/lib\/pitr\/shop belongs to: it is system identifier 7300000000000000002, database "shop"/,
  );
  expect(() => matchSource(server({ database: 'shop_test' }), owner, null, where)).toThrow(/it is system identifier \d+, database "shop_test"/);
});

test('behind: a lower position than acknowledged (keepalives included), or an older timeline', () => {
  expect(() => matchSource(server({ xlogPos: '0/4FFFFFF' }), owner, end('0/4000000', '0/5000000'), where)).toThrow(
    'source postgresql://db1/shop is behind the archive: its WAL ends at 0/4FFFFFF, and the archive is complete up to 0/5000000',
  );
  expect(() => matchSource(server({ timeline: 1 }), owner, end('0/4000000', '0/4000000', 2), where)).toThrow(
    'source postgresql://db1/shop is behind the archive: it is on timeline 1, the archive already on timeline 2',
  );
});

test('promoted: a later timeline whose history left the archive timeline at or after the archive end', () => {
  const promoted = server({ timeline: 2, history: [{ timeline: 1, switchpoint: parseLsn('0/4000000') }] });
  expect(matchSource(promoted, owner, end('0/4000000', '0/4100000'), where)).toEqual({ kind: 'promoted', from: 1, to: 2, switchpoint: parseLsn('0/4000000') });
  const twice = server({
    timeline: 3,
    history: [
      { timeline: 1, switchpoint: parseLsn('0/4000000') },
      { timeline: 2, switchpoint: parseLsn('0/4800000') },
    ],
  });
  expect(matchSource(twice, owner, end('0/4400000', '0/4400000', 2), where)).toMatchObject({ kind: 'promoted', from: 2, to: 3 });
});

test('branched: the archive holds transactions after the branch point, or its timeline is not in the history', () => {
  const promoted = server({ timeline: 2, history: [{ timeline: 1, switchpoint: parseLsn('0/4000000') }] });
  expect(() => matchSource(promoted, owner, end('0/4000100'), where)).toThrow(
    "source postgresql://db1/shop branched off the archive's history: it is on timeline 2 since 0/4000000, but the archive holds transactions of timeline 1 up to 0/4000100, after the branch point 0/4000000",
  );
  const sibling = server({ timeline: 3, history: [{ timeline: 1, switchpoint: parseLsn('0/4000000') }] });
  expect(() => matchSource(sibling, owner, end('0/3000000', '0/3000000', 2), where)).toThrow(/and timeline 2 is not in its history$/);
});
