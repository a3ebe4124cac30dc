/**
 * `pitr init` with several --repo: every repository is claimed for the source and records the slot's
 * creation (two local ones and a gs:// one on the fake server), each is reported, and a repository that
 * belongs to another source refuses the whole init before anything is changed anywhere.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Repository } from '../../src/archive/repository';
import { LocalStorage } from '../../src/storage/local/local-storage';
import { FakeGcsServer } from '../fake-gcs/fake-gcs-server';
import { PgCluster } from '../harness/pg-cluster';
import { runPitr, type RunResult } from '../harness/pitr-process';

jest.setTimeout(120_000);

let cluster: PgCluster;
let gcs: FakeGcsServer;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'pitr-init-several-'));
  [cluster, gcs] = await Promise.all([PgCluster.start(), FakeGcsServer.start()]);
  await cluster.psql('CREATE TABLE items (id int PRIMARY KEY, v text)');
});

afterAll(async () => {
  await gcs?.close();
  await cluster?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

const init = (slot: string, repos: string[], extra: string[] = []): Promise<RunResult> =>
  runPitr([
    'init',
    '--source',
    cluster.url(),
    '--slot',
    slot,
    ...repos.flatMap((r) => ['--repo', r]),
    '--gcs-endpoint',
    gcs.url,
    '--log-level',
    'warn',
    ...extra,
  ]);

const slots = async (): Promise<string[]> =>
  (await cluster.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots ORDER BY 1')).map((r) => r.slot_name);

test('claims every repository given, records the slot in each and reports each', async () => {
  const local = path.join(scratch, 'local');
  const second = path.join(scratch, 'second');
  const result = await init(
    'pitr_several',
    [`${local}?name=local&retention=7d`, `${second}?name=copy`, 'gs://pitr-dr/shop?name=dr&async&storage-class=NEARLINE'],
    ['--json'],
  );
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const doc = JSON.parse(result.stdout) as { repository: string; repositories: { name: string; location: string; slotCreation: { slot: string } | null }[] };
  expect(doc.repository).toBe(local);
  expect(doc.repositories.map((r) => [r.name, r.location, r.slotCreation?.slot])).toEqual([
    ['local', local, 'pitr_several'],
    ['copy', second, 'pitr_several'],
    ['dr', 'gs://pitr-dr/shop', 'pitr_several'],
  ]);
  for (const dir of [local, second]) {
    expect(existsSync(path.join(dir, 'repository.json'))).toBe(true);
    expect(readdirSync(path.join(dir, 'slots'))).toHaveLength(1);
  }
  expect(gcs.objectNames('pitr-dr', 'shop/')).toEqual(expect.arrayContaining(['shop/repository.json']));
  expect(gcs.objectNames('pitr-dr', 'shop/slots/')).toHaveLength(1);

  // again, idempotently, in human form: one line per repository, and the archive command to run next
  const again = await init('pitr_several', [
    `${local}?name=local&retention=7d`,
    `${second}?name=copy`,
    'gs://pitr-dr/shop?name=dr&async&storage-class=NEARLINE',
  ]);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain(`  repository local ${local}\n  repository copy ${second}\n  repository dr gs://pitr-dr/shop\n`);
  expect(again.stdout).toContain(
    `next: pitr archive --source ... --repo '${local}?name=local&retention=7d' --repo ${second}?name=copy --repo 'gs://pitr-dr/shop?name=dr&async&storage-class=NEARLINE'\n`,
  );
  expect(readdirSync(path.join(second, 'slots'))).toHaveLength(1);
});

test('a single repository is reported as before, without a list', async () => {
  const only = path.join(scratch, 'only');
  const result = await init('pitr_single', [only], ['--json']);
  expect(result.code).toBe(0);
  const doc = JSON.parse(result.stdout) as Record<string, unknown>;
  expect(doc.repository).toBe(only);
  expect(doc).not.toHaveProperty('repositories');
  const human = await init('pitr_single', [only]);
  expect(human.stdout).toContain(`  repository ${only}\nnext: pitr archive --source ... --repo ${only}\n`);
});

test('one repository of another source refuses the whole init, and nothing is changed in any', async () => {
  const fresh = path.join(scratch, 'fresh');
  const foreign = path.join(scratch, 'foreign');
  await new Repository(new LocalStorage(foreign)).claim({ systemIdentifier: '7000000000000000001', database: 'other' });
  const before = await slots();
  const result = await init('pitr_refused', [fresh, 'gs://pitr-fresh/shop', foreign]);
  expect(result.code).toBe(5);
  expect(result.stderr).toContain(`pitr: error: repository ${foreign} belongs to another database (system identifier 7000000000000000001, database "other")`);
  expect(existsSync(path.join(fresh, 'repository.json'))).toBe(false);
  expect(gcs.objectNames('pitr-fresh', 'shop/repository.json')).toEqual([]);
  expect(await slots()).toEqual(before);
});
