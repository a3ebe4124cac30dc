/**
 * A sample database in pagila's shape (test/fixtures/rental-shop.ts: procedures, triggers, partitions,
 * sequences not OWNED BY their columns), loaded through the archive the way pg_dump output is loaded,
 * then changed the way its application and its maintenance would change it. Restores to points after
 * each step equal the source then, in rows and schema, from either backup; sequences hand out nothing
 * the restored rows hold.
 */
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { PointRecorder, restoreDifference } from '../harness/recorded-points';
import { EMIT_HEARTBEAT_SQL } from '../../src/capture/in-band-sql';
import { RENTAL_SHOP_DATA, RENTAL_SHOP_SCHEMA } from '../fixtures/rental-shop';

let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
const recorder = (): PointRecorder => points as PointRecorder;
let points: PointRecorder | undefined;

const CHANGES: { name: string; sql: string }[] = [
  {
    name: 'a maintenance procedure adds next month’s partition with dynamic SQL and commits, then December is traded',
    sql: `CREATE PROCEDURE public.add_charge_partition(month date) LANGUAGE plpgsql AS $$
DECLARE
  part text := 'charge_' || to_char(month, 'YYYY_MM');
BEGIN
  EXECUTE format('CREATE TABLE public.%I (LIKE public.charge INCLUDING DEFAULTS)', part);
  EXECUTE format('ALTER TABLE ONLY public.charge ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)', part, month::timestamptz, (month + interval '1 month')::timestamptz);
  COMMIT;
  EXECUTE format('CREATE INDEX %I ON public.%I (member_id)', 'idx_' || part || '_member', part);
END $$;
CALL public.add_charge_partition('2026-12-01');
INSERT INTO public.loan (lent_at, copy_id, member_id, clerk_id) SELECT timestamptz '2026-12-02 09:00+00' + g * interval '1 hour', 1 + g % 60, 1 + g % 40, 1 FROM generate_series(1, 10) g;
INSERT INTO public.charge (member_id, clerk_id, loan_id, amount, paid_at) SELECT member_id, clerk_id, loan_id, 3.99, lent_at FROM public.loan WHERE lent_at >= '2026-12-01';`,
  },
  {
    name: 'the application runs the SECURITY DEFINER report (a temporary table each time), returns loans (the update trigger fires), renames titles (the fulltext trigger fires)',
    sql: `SELECT count(*) FROM public.loyal_members(2);
SELECT count(*) FROM public.loyal_members(3);
UPDATE public.loan SET returned_at = lent_at + interval '2 days' WHERE returned_at IS NULL AND loan_id % 2 = 0;
UPDATE public.title SET name = name || ' (remastered)', blurb = blurb || ', now in colour' WHERE title_id <= 5;
UPDATE public.member SET points = points + 100 WHERE member_id IN (SELECT member_id FROM public.loyal_members(4));`,
  },
  {
    name: 'a member leaves, numbers are reserved without rows, the materialized view is refreshed, an old partition is detached and dropped',
    sql: `INSERT INTO public.member (shop_id, name, email, place_id) VALUES (1, 'short stay', 'short@example.com', 7);
DELETE FROM public.member WHERE name = 'short stay';
SELECT nextval('public.member_member_id_seq'), nextval('public.member_member_id_seq');
REFRESH MATERIALIZED VIEW public.takings_by_rating;
ALTER TABLE public.charge DETACH PARTITION public.charge_2026_10;
DROP TABLE public.charge_2026_10;`,
  },
];

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  expect((await fx.init(['--log-level', 'warn'])).code).toBe(0);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await fx.backup()).code).toBe(0); // of the empty database: a restore replays the whole load
  points = new PointRecorder(fx);
  await fx.cluster.psqlFile(RENTAL_SHOP_SCHEMA);
  await fx.cluster.psqlFile(RENTAL_SHOP_DATA);
  await recorder().record('loaded');
  for (const [i, change] of CHANGES.entries()) {
    await fx.cluster.psqlFile(change.sql);
    await recorder().record(change.name);
    await fx.cluster.query(EMIT_HEARTBEAT_SQL); // the archiver's heartbeat, at once rather than within --heartbeat: sequences after the point
    if (i === 0) expect((await fx.backup()).code).toBe(0); // a second backup, of the loaded database
  }
  expect((await runPitr(['mark', 'end', '--source', fx.source, '--log-level', 'warn'])).code).toBe(0);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  archiver = undefined;
}, 180_000);

afterAll(async () => {
  await archiver?.stop('SIGKILL');
  await fx?.destroy();
});

test('restored just after it was loaded (replaying the whole pg_dump-style load from a backup of the empty database), it equals the source', async () => {
  expect(await restoreDifference(fx, recorder().points[0] as never, 'shop_loaded')).toBe('');
});

CHANGES.forEach((change, i) => {
  test(`restored after: ${change.name}`, async () => {
    expect(await restoreDifference(fx, recorder().points[i + 1] as never, `shop_changed_${i + 1}`)).toBe('');
  });
});

test('every sequence of a restored shop hands out a number no row holds', async () => {
  const db = `shop_changed_${CHANGES.length}`;
  for (const [table, column, seq] of [
    ['member', 'member_id', 'member_member_id_seq'],
    ['loan', 'loan_id', 'loan_loan_id_seq'],
    ['charge', 'charge_id', 'charge_charge_id_seq'],
    ['title', 'title_id', 'title_title_id_seq'],
  ] as const) {
    const [row] = await fx.cluster.query<{ next: string; max: string }>(
      `SELECT nextval('public.${seq}')::text AS next, (SELECT max(${column}) FROM public.${table})::text AS max`,
      [],
      db,
    );
    expect([table, Number(row?.next) > Number(row?.max)]).toEqual([table, true]);
  }
  // the two numbers the application reserved without a row are not handed out again
  const [member] = await fx.cluster.query<{ next: string }>(`SELECT nextval('public.member_member_id_seq')::text AS next`, [], db);
  expect(Number(member?.next)).toBeGreaterThan(43);
});
