/**
 * Schema changes that cannot be replayed are found and named before an incident and during one; the
 * documented limits behave as documented; the source side never makes the application's writes fail.
 */
import { Client } from 'pg';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { errorLines, restoreFails, restoreOk } from './restore-helpers';

let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
let unreplayable: { lsn: string; xid: string };
let forged: { lsn: string };
let beforeUnreplayable: string;

/** Runs `sql` in a transaction of its own and returns its xid (its commit LSN is found in the archive later). */
async function commitOf(client: Client, sql: string): Promise<{ lsn: string; xid: string }> {
  await client.query('BEGIN');
  const { rows } = await client.query<{ xid: string }>('SELECT txid_current()::text AS xid');
  await client.query(sql);
  await client.query('COMMIT');
  return { lsn: '', xid: rows[0]?.xid ?? '' };
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept VALUES (1, 'a')`);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  expect((await fx.backup()).code).toBe(0);
  const client = new Client({ connectionString: fx.source });
  await client.connect();
  try {
    // two SQL procedures of the same name: the one that ran cannot be told from the other
    await client.query(`CREATE SCHEMA one; CREATE SCHEMA two;
      CREATE PROCEDURE one.make_table() LANGUAGE sql AS $$ CREATE TABLE public.made (x int) $$;
      CREATE PROCEDURE two.make_table() LANGUAGE sql AS $$ CREATE TABLE public.other (y int) $$`);
    await client.query(`INSERT INTO kept VALUES (2, 'b')`);
    beforeUnreplayable = (await client.query<{ t: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t`))
      .rows[0]?.t as string;
    unreplayable = await commitOf(client, 'CALL one.make_table()');
    await client.query(`INSERT INTO kept VALUES (3, 'c')`);
    forged = { lsn: '' };
    await client.query(`SELECT pg_logical_emit_message(true, 'pitr.ddl', '{"not": "what pitr writes"}')`);
    await client.query(`INSERT INTO kept VALUES (4, 'd')`);
  } finally {
    await client.end();
  }
  await fx.waitCaughtUp();
  const index = await fx.transactions();
  const find = (xid: string): string => {
    const t = index.find((x) => String(x.xid) === xid);
    if (!t) throw new Error(`transaction ${xid} is not in the archive`);
    return `${(t.commitLsn >> 32n).toString(16).toUpperCase()}/${(t.commitLsn & 0xffffffffn).toString(16).toUpperCase()}`;
  };
  unreplayable.lsn = find(unreplayable.xid);
  const forgedTxn = index.find((t) => t.messages.some((m) => m.tag === 'M' && m.prefix === 'pitr.ddl' && m.content.toString().includes('what pitr writes')));
  forged.lsn = forgedTxn ? `${(forgedTxn.commitLsn >> 32n).toString(16).toUpperCase()}/${(forgedTxn.commitLsn & 0xffffffffn).toString(16).toUpperCase()}` : '?';
}, 120_000);

afterAll(async () => {
  await archiver?.stop('SIGKILL');
  await fx?.destroy();
});

test('the archiver warns, when it stores it, of a schema change a restore cannot replay', async () => {
  const line = await (archiver as PitrProcess).waitFor((l) => l.event === 'ddl_unreplayable' && l.commitLsn === unreplayable.lsn);
  expect(String(line.msg)).toMatch(
    /archived a schema change that a restore cannot replay \(CREATE TABLE committed at .*\): it ran in SQL function "make_table"/,
  );
});

test('pitr verify --ddl lists every schema change that cannot be replayed, with its position, and exits 11', async () => {
  const result = await runPitr(['verify', '--repo', fx.repoDir, '--ddl', '--log-level', 'warn']);
  expect(result.code).toBe(11);
  const lines = result.stdout.split('\n').filter((l) => l.startsWith('unreplayable'));
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(
    new RegExp(
      `^unreplayable +segments/\\S+ +schema change committed at ${unreplayable.lsn} \\(\\S+Z, xid ${unreplayable.xid}\\), CREATE TABLE: it ran in SQL function "make_table"`,
    ),
  );
  expect(lines[1]).toMatch(new RegExp(`committed at ${forged.lsn} .*not a schema change record pitr wrote`));
  // without --ddl the archive is intact
  expect((await runPitr(['verify', '--repo', fx.repoDir, '--log-level', 'warn'])).code).toBe(0);
});

test('a restore past it stops with one line naming the change and its position (exit 11), never "internal error"', async () => {
  const result = await restoreFails(fx, 'past_unreplayable', 'latest');
  expect(result.code).toBe(11);
  expect(errorLines(result)).toEqual([
    expect.stringMatching(
      new RegExp(
        `^pitr: error: cannot replay the schema change committed at ${unreplayable.lsn} \\(\\S+Z, xid ${unreplayable.xid}\\) \\(CREATE TABLE\\): it ran in SQL function "make_table"`,
      ),
    ),
    `hint: restore to a point before it (--to lsn:${unreplayable.lsn} --exclusive); "pitr verify --ddl" lists every schema change that cannot be replayed`,
  ]);
});

test('followed literally, the hint restores the state just before the change', async () => {
  await restoreOk(fx, 'before_unreplayable', `lsn:${unreplayable.lsn}`, ['--exclusive']);
  const rows = await fx.cluster.query<{ id: number }>('SELECT id FROM kept ORDER BY id', [], 'before_unreplayable');
  expect(rows.map((r) => r.id)).toEqual([1, 2]);
  await restoreOk(fx, 'by_time_before', beforeUnreplayable);
});

test('a message with pitr’s prefix that pitr did not write stops a restore past it, named', async () => {
  const result = await restoreFails(fx, 'past_forged', `lsn:${forged.lsn}`);
  expect(result.code).toBe(11);
  // the first refusal met is the unreplayable change before it
  expect(errorLines(result)[0]).toMatch(/cannot replay the schema change committed at/);
});

describe('source side', () => {
  test('a table created without a primary key gets REPLICA IDENTITY FULL, so the application’s UPDATE and DELETE work; the session setting turns it off', async () => {
    await fx.cluster.withClient(async (client) => {
      const notices: string[] = [];
      client.on('notice', (n) => notices.push(n.message ?? ''));
      await client.query('CREATE TABLE no_key (a int, b text)');
      expect(notices).toEqual([expect.stringMatching(/^pitr: table no_key has no primary key; its replica identity is now FULL/)]);
      await client.query(`INSERT INTO no_key VALUES (1, 'x'); UPDATE no_key SET b = 'y'; DELETE FROM no_key`);
      const [identity] = (await client.query<{ r: string }>(`SELECT relreplident AS r FROM pg_class WHERE relname = 'no_key'`)).rows;
      expect(identity?.r).toBe('f');
      const logged = await (archiver as PitrProcess).waitFor((l) => l.event === 'replica_identity_full' && l.table === 'public.no_key');
      expect(String(logged.msg)).toMatch(/^table public\.no_key has no primary key: pitr gave it REPLICA IDENTITY FULL/);
      // a key added afterwards (pg_dump's output, pgbench -i and many tools add it after the rows): back to DEFAULT
      await client.query('CREATE TABLE key_later (id int, v text); INSERT INTO key_later VALUES (1, 0); ALTER TABLE key_later ADD PRIMARY KEY (id)');
      await client.query('CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id); CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)');
      await client.query('ALTER TABLE parted ADD PRIMARY KEY (id)');
      // a FULL the user chose stays, key or not
      await client.query('CREATE TABLE chosen_full (id int); ALTER TABLE chosen_full REPLICA IDENTITY FULL; ALTER TABLE chosen_full ADD PRIMARY KEY (id)');
      const identities = (
        await client.query<{ relname: string; r: string }>(
          `SELECT relname, relreplident AS r FROM pg_class WHERE relname IN ('key_later', 'parted_1', 'chosen_full') ORDER BY relname`,
        )
      ).rows;
      expect(identities).toEqual([
        { relname: 'chosen_full', r: 'f' },
        { relname: 'key_later', r: 'd' },
        { relname: 'parted_1', r: 'd' },
      ]);
      await client.query(`SET pitr.auto_replica_identity = off`);
      await client.query('CREATE TABLE left_alone (a int)');
      const [alone] = (await client.query<{ r: string }>(`SELECT relreplident AS r FROM pg_class WHERE relname = 'left_alone'`)).rows;
      expect(alone?.r).toBe('d');
      await expect(client.query('INSERT INTO left_alone VALUES (1); UPDATE left_alone SET a = 2')).rejects.toThrow(/does not have a replica identity/);
    });
  });
});

describe('pitr init on a source with tables it cannot archive', () => {
  let other: ArchiveFixture;
  beforeAll(async () => {
    other = await ArchiveFixture.create();
    await other.cluster.psql(
      `CREATE TABLE no_key (a int); CREATE TABLE keyed_nothing (id int PRIMARY KEY); ALTER TABLE keyed_nothing REPLICA IDENTITY NOTHING`,
    );
  });
  afterAll(async () => other?.destroy());

  test('names each problem with the fix that fits it and changes nothing (exit 3); --apply-fixes applies them and goes on', async () => {
    const refused = await other.init(['--log-level', 'warn']);
    expect(refused.code).toBe(3);
    expect(refused.stderr.split('\n').filter((l) => /check failed|fix:|^pitr: error|^hint/.test(l))).toEqual([
      'pitr: check failed: table "public"."keyed_nothing" has REPLICA IDENTITY NOTHING although it has a primary key: its UPDATEs and DELETEs cannot be archived and fail on the source',
      '  fix: ALTER TABLE "public"."keyed_nothing" REPLICA IDENTITY DEFAULT;',
      'pitr: check failed: table "public"."no_key" has no primary key and no usable replica identity: its UPDATEs and DELETEs cannot be archived and fail on the source',
      '  fix: ALTER TABLE "public"."no_key" REPLICA IDENTITY FULL;  -- or add a primary key',
      expect.stringMatching(/^pitr: error: 2 checks failed on .*; nothing was changed$/),
      'hint: apply the fixes above (pitr init --apply-fixes applies the table fixes) and run "pitr init" again',
    ]);
    expect(await other.cluster.query(`SELECT 1 FROM pg_publication`)).toHaveLength(0);
    // --json: the fixes the hint speaks of are in the error object, each with its problem
    const json = await other.init(['--json', '--log-level', 'warn']);
    expect(json.code).toBe(3);
    const { error } = JSON.parse(json.stdout) as { error: { kind: string; hint: string; checks: unknown[] } };
    expect(error).toMatchObject({ kind: 'SourceConfig', hint: expect.stringContaining('apply the fixes listed in "checks"') });
    expect(error.checks).toEqual([
      expect.objectContaining({ fix: 'ALTER TABLE "public"."keyed_nothing" REPLICA IDENTITY DEFAULT;', applicable: true }),
      expect.objectContaining({ fix: 'ALTER TABLE "public"."no_key" REPLICA IDENTITY FULL;  -- or add a primary key', applicable: true }),
    ]);
    expect(error.checks[0]).toHaveProperty('problem', expect.stringContaining('"public"."keyed_nothing" has REPLICA IDENTITY NOTHING'));
    const fixed = await other.init(['--apply-fixes', '--log-level', 'warn']);
    expect(fixed.code).toBe(0);
    expect(fixed.stderr.split('\n').filter((l) => l.startsWith('pitr: applied'))).toEqual([
      'pitr: applied: ALTER TABLE "public"."keyed_nothing" REPLICA IDENTITY DEFAULT',
      'pitr: applied: ALTER TABLE "public"."no_key" REPLICA IDENTITY FULL',
    ]);
    const identities = await other.cluster.query<{ relname: string; r: string }>(
      `SELECT relname, relreplident AS r FROM pg_class WHERE relname IN ('no_key', 'keyed_nothing') ORDER BY 1`,
    );
    expect(identities).toEqual([
      { relname: 'keyed_nothing', r: 'd' },
      { relname: 'no_key', r: 'f' },
    ]);
  });
});

describe('long segments: several source transactions replayed in one', () => {
  let long: ArchiveFixture;
  let longArchiver: PitrProcess | undefined;
  beforeAll(async () => {
    long = await ArchiveFixture.create();
    await long.cluster.psql(`CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE moods (id int PRIMARY KEY, m mood);
      CREATE TABLE counted (x int PRIMARY KEY); INSERT INTO counted SELECT generate_series(1, 3);
      CREATE MATERIALIZED VIEW stale AS SELECT count(*) AS n FROM counted`);
    await long.cluster.psql('INSERT INTO counted SELECT generate_series(4, 5)'); // the view is stale now: 3, the table has 5
    expect((await long.init(['--log-level', 'warn'])).code).toBe(0);
    longArchiver = long.startArchiver(['--segment-age', '5s', '--heartbeat', '1h']);
    await longArchiver.waitForState('streaming');
    expect((await long.backup()).code).toBe(0);
    await long.cluster.psql('CREATE MATERIALIZED VIEW made_later AS SELECT count(*) AS n FROM counted');
    await long.cluster.psql('INSERT INTO counted SELECT generate_series(6, 8)'); // made_later is stale too: 5 of 8
    await long.waitCaughtUp(); // everything so far is sealed: the next transactions open a new segment
    await long.cluster.psql(`ALTER TYPE mood ADD VALUE 'great'`);
    await long.cluster.psql(`INSERT INTO moods VALUES (1, 'great')`);
    await runPitr(['mark', 'end', '--source', long.source, '--log-level', 'warn']);
    await long.waitCaughtUp();
    expect(await longArchiver.stop()).toBe(0);
    longArchiver = undefined;
  }, 120_000);
  afterAll(async () => {
    await longArchiver?.stop('SIGKILL');
    await long?.destroy();
  });

  test('ALTER TYPE ... ADD VALUE and a transaction using the value, archived in one segment, replay (a commit after the first)', async () => {
    const txns = await long.transactions();
    const added = txns.find((t) => t.messages.some((m) => m.tag === 'M' && m.prefix === 'pitr.ddl' && m.content.toString().includes('ADD VALUE')));
    const used = txns.find((t) => t.messages.some((m) => m.tag === 'I' && t.relations.get(m.relationId)?.name === 'moods'));
    expect(added?.segment).toBeDefined();
    expect(used?.segment).toBe(added?.segment);
    await restoreOk(long, 'moods_restored', 'latest');
    expect(await long.cluster.query('SELECT id, m::text FROM moods', [], 'moods_restored')).toEqual([{ id: 1, m: 'great' }]);
  });

  test('limit: a materialized view comes back as its query gives it over the restored tables, not as stale as the source kept it', async () => {
    // documented in the README's Limits: pg_dump and pg_restore behave the same
    expect(await long.cluster.query('SELECT n::int FROM stale')).toEqual([{ n: 3 }]);
    expect(await long.cluster.query('SELECT n::int FROM made_later')).toEqual([{ n: 5 }]);
    // the view in the backup is refreshed when the backup loads; the one made later is made at its position
    expect(await long.cluster.query('SELECT n::int FROM stale', [], 'moods_restored')).toEqual([{ n: 5 }]);
    expect(await long.cluster.query('SELECT n::int FROM made_later', [], 'moods_restored')).toEqual([{ n: 5 }]);
  });
});
