import { exitWithin } from '../capture/source-helpers';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr } from '../harness/pitr-process';

/** The publication is checked on every replication connection, at start and on reconnecting. */
let fx: ArchiveFixture;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY)');
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => {
  await fx.destroy();
});

test('archive --publication nope: exit 3 naming the publication, also at --log-level warn', async () => {
  const result = await runPitr([...fx.archiveArgs(['--publication', 'nope']), '--log-level', 'warn']);
  expect(result.stderr).toMatch(
    /^pitr: error: publication "nope" does not exist on postgresql:\/\/\S+\nhint: run "pitr init --publication nope" to create it/m,
  );
  expect(result.code).toBe(3);
  const [{ active }] = (await fx.cluster.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = 'pitr'")) as [
    { active: boolean },
  ];
  expect(active).toBe(false);
});

test('the publication dropped while archiving: on reconnecting the archiver stops with exit 3 naming it', async () => {
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await fx.cluster.query('DROP PUBLICATION pitr');
  await fx.cluster.query('INSERT INTO items VALUES (1)'); // decoding it needs the publication
  const code = await exitWithin(archiver, 60_000);
  expect(archiver.stderr).toMatch(/pitr: error: publication "pitr" does not exist on postgresql:\/\/\S+/);
  expect(code).toBe(3);
  await fx.cluster.query('CREATE PUBLICATION pitr FOR ALL TABLES');
});
