import type { StatusReport } from '../../src/ops/status';
import { caughtUp } from '../capture/source-helpers';
import { ArchiveFixture } from '../harness/archive-fixture';
import { PgCluster } from '../harness/pg-cluster';
import { runPitr } from '../harness/pitr-process';

/** `pitr status` says which source the repository belongs to, and a repository of another database is broken. */
let fx: ArchiveFixture;
let other: PgCluster;

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  other = await PgCluster.start();
  await fx.cluster.query('CREATE TABLE items (id int PRIMARY KEY)');
  expect((await fx.init()).code).toBe(0);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await fx.cluster.query('INSERT INTO items SELECT generate_series(1, 10)');
  await caughtUp(fx.cluster);
  expect(await archiver.stop()).toBe(0);
  expect((await runPitr(['backup', '--source', fx.source, '--repo', fx.repoDir, '--log-level', 'warn'])).code).toBe(0);
});
afterAll(async () => {
  await other.destroy();
  await fx.destroy();
});

const systemIdentifier = async (cluster: PgCluster): Promise<string> =>
  ((await cluster.query<{ sid: string }>('SELECT system_identifier::text AS sid FROM pg_control_system()'))[0] as { sid: string }).sid;

test('status names the source the repository belongs to', async () => {
  const result = await runPitr(['status', '--source', fx.source, '--repo', fx.repoDir, '--json']);
  const report = JSON.parse(result.stdout) as StatusReport;
  expect(report.repository).toEqual({ location: fx.repoDir, systemIdentifier: await systemIdentifier(fx.cluster), database: 'postgres' });
  expect(report.reasons.filter((r) => /belongs to another database/.test(r.message))).toEqual([]);
});

test("status of another database's repository: broken, exit 2, naming both", async () => {
  const result = await runPitr(['status', '--source', other.url(), '--repo', fx.repoDir, '--json']);
  const report = JSON.parse(result.stdout) as StatusReport;
  expect(report.health).toBe('broken');
  expect(report.reasons[0]).toEqual({
    severity: 'critical',
    message:
      `repository ${fx.repoDir} belongs to another database (system identifier ${await systemIdentifier(fx.cluster)}, database "postgres"), ` +
      `not to the source ${other.url()} (system identifier ${await systemIdentifier(other)}, database "postgres"): point --repo at this source's repository, or --source at that database`,
  });
  expect(result.code).toBe(2);
  const human = await runPitr(['status', '--source', other.url(), '--repo', fx.repoDir]);
  expect(human.stdout).toMatch(/^PITR CRITICAL - repository \S+ belongs to another database/);
});
