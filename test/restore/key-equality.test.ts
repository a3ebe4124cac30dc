/**
 * Keys equal under the table's unique index but archived with different texts: numeric 1.0 and 1.00,
 * citext 'Key' and 'KEY', float8 0 and -0. A row deleted under one text and inserted again under the
 * other (or its key rewritten to the other text) is the same key to the target, so replay must keep
 * those changes in the source's order even though their texts differ. And the reverse: text keys
 * that read as the same number ('7', '07', '007'; '0', '-0') are different rows, each keeping its own
 * last update when hot rows are updated again and again.
 */
import { Client } from 'pg';
import { TargetCatalog } from '../../src/restore/target-catalog';
import { ArchiveFixture } from '../harness/archive-fixture';
import { fingerprintDatabase, type Fingerprints } from '../harness/fingerprint';
import { runPitr } from '../harness/pitr-process';
import { databaseFingerprints, describeDifference, restoreOk, shellLine } from './restore-helpers';

let fx: ArchiveFixture;
let expected: Fingerprints;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(`
    CREATE EXTENSION citext;
    CREATE TABLE num (k numeric PRIMARY KEY, v text);
    CREATE TABLE ci (k citext PRIMARY KEY, v int);
    CREATE TABLE fl (k float8 PRIMARY KEY, v int);
    CREATE TABLE plain (id int PRIMARY KEY, v int);
    INSERT INTO num SELECT (g || '.0')::numeric, 'seed' FROM generate_series(1, 20) g;
    INSERT INTO ci SELECT 'Key' || g, g FROM generate_series(1, 20) g;
    INSERT INTO fl VALUES (0, 0);
    CREATE TABLE hot (k text PRIMARY KEY, v int, note text);
    INSERT INTO hot SELECT k, 0, 'seed' FROM unnest(ARRAY['7', '07', '007', '0', '-0']) k;`);
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  const archiver = fx.startArchiver();
  try {
    await archiver.waitForState('streaming');
    const backup = await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn']);
    if (backup.code !== 0) throw new Error(`pitr backup failed:\n${backup.stderr}`);
    const client = new Client({ connectionString: fx.source });
    await client.connect();
    try {
      // one procedure: its transactions land in one segment, where batches gather across transactions
      await client.query(`DO $$
        BEGIN
          FOR g IN 1..20 LOOP
            INSERT INTO plain VALUES (g, g);
            DELETE FROM num WHERE k = g;                                     -- the row archived as g.0
            UPDATE plain SET v = v + 1 WHERE id = g;
            COMMIT;
            INSERT INTO num VALUES ((g || '.00')::numeric, 'again');         -- the same key, as g.00
            UPDATE ci SET v = -v WHERE k = ('key' || g)::citext;                     -- matched case-insensitively
            COMMIT;
            DELETE FROM ci WHERE k = ('KEY' || g)::citext;
            COMMIT;
            INSERT INTO ci VALUES ('KEY' || g, g * 10);                      -- the same key, in capitals
            COMMIT;
            IF g % 2 = 0 THEN UPDATE num SET k = (g || '.000')::numeric, v = 'moved' WHERE k = g; COMMIT; END IF;
          END LOOP;
          FOR g IN 1..300 LOOP
            UPDATE hot SET v = v + g, note = 'by ' || g WHERE k = (ARRAY['7', '07', '007', '0', '-0'])[1 + g % 5] OR (g % 7 = 0 AND k = '7');
            COMMIT;
          END LOOP;
          DELETE FROM fl WHERE k = 0;
          COMMIT;
          INSERT INTO fl VALUES ('-0', 1);
          COMMIT;
        END $$`);
    } finally {
      await client.end();
    }
    expected = await fingerprintDatabase(fx.source);
    await fx.waitCaughtUp();
  } finally {
    expect(await archiver.stop()).toBe(0);
  }
}, 120_000);

afterAll(async () => fx?.destroy());

test.each([1, 2])('--jobs %i keeps the changes of equal keys with different texts in order', async (jobs) => {
  const db = `equal_keys_${jobs}`;
  const run = await restoreOk(fx, db, 'latest', ['--jobs', String(jobs)]);
  const actual = await databaseFingerprints(fx, db);
  if (JSON.stringify(actual) !== JSON.stringify(expected))
    throw new Error(`${shellLine(run.args)} restored the wrong data:\n${describeDifference(expected, actual, undefined, undefined)}`);
});

test('only keys whose equal values have equal texts let changes to different keys commute', async () => {
  await fx.cluster.psql(`
    CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE TABLE by_text (k text PRIMARY KEY);
    CREATE TABLE by_nocase (k text COLLATE nocase PRIMARY KEY);
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN small_id AS int;
    CREATE TABLE by_enum_uuid (m mood, u uuid, d small_id, PRIMARY KEY (m, u, d));
    CREATE TABLE by_time (t timestamptz PRIMARY KEY);
    CREATE TABLE by_interval (i interval PRIMARY KEY);
    CREATE TABLE two_unique (id int PRIMARY KEY, code int UNIQUE);`);
  const client = new Client({ connectionString: fx.source });
  await client.connect();
  try {
    const catalog = await TargetCatalog.load(client);
    const commute = Object.fromEntries(
      ['plain', 'by_text', 'by_enum_uuid', 'num', 'ci', 'fl', 'by_nocase', 'by_time', 'by_interval', 'two_unique'].map((name) => [
        name,
        catalog.byName('public', name)?.keysCommute,
      ]),
    );
    expect(commute).toEqual({
      plain: true,
      by_text: true,
      by_enum_uuid: true,
      num: false,
      ci: false,
      fl: false,
      by_nocase: false,
      by_time: true, // archived under TimeZone UTC, always
      by_interval: false,
      two_unique: false,
    });
  } finally {
    await client.end();
  }
});
