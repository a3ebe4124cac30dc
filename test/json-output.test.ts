import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { ArchiveFixture } from './harness/archive-fixture';
import { runPitr } from './harness/pitr-process';
import { RepoCopies } from './harness/repo-files';

/**
 * Every `--json` document, from each command run against a real archive: it carries `formatVersion`,
 * matches its schema in docs/json/, and a field has one type wherever it appears.
 */
jest.setTimeout(120_000);

let fx: ArchiveFixture;
const copies = new RepoCopies('pitr-json-');
const SCHEMAS = path.resolve(__dirname, '../docs/json');
/** The document of each command, by the name of its schema file (and what else it shows after a colon). */
const docs = new Map<string, unknown>();

async function json(name: string, args: string[], expectedCode = 0): Promise<Record<string, unknown>> {
  const result = await runPitr([...args, '--json', '--log-level', 'warn']);
  if (result.code !== expectedCode) throw new Error(`${name}: exit ${result.code}, not ${expectedCode}: ${result.stderr}`);
  const doc = JSON.parse(result.stdout) as Record<string, unknown>;
  docs.set(name, doc);
  return doc;
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(
    "CREATE TABLE items (id int PRIMARY KEY, v text); ALTER TABLE items REPLICA IDENTITY FULL; INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 20) g;",
  );
  await json('init', ['init', '--source', fx.source, '--repo', fx.repoDir]);
  await json('init:several', ['init', '--source', fx.source, '--repo', fx.repoDir, '--repo', `${path.join(copies.copy(fx.repoDir), 'second')}?name=second`]);
  const archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  await json('backup', ['backup', '--source', fx.source, '--repo', fx.repoDir]);
  await fx.cluster.psql("INSERT INTO items VALUES (100, 'after')");
  await json('mark', ['mark', 'before-delete', '--source', fx.source]);
  await fx.cluster.psql('DELETE FROM items WHERE id <= 5');
  await fx.waitCaughtUp();
  await json('status', ['status', '--source', fx.source, '--repo', fx.repoDir]);
  await json('status:several', ['status', '--source', fx.source, '--repo', fx.repoDir, '--repo', `${copies.copy(fx.repoDir)}?name=copy&async`]);
  await json('backup:several', ['backup', '--source', fx.source, '--repo', fx.repoDir, '--repo', path.join(copies.copy(fx.repoDir), 'second')]);
  await json('status:critical', ['status', '--source', fx.source, '--repo', fx.repoDir, '--max-lag', '1ms', '--critical-backup-age', '1ms'], 2);
  expect(await archiver.stop()).toBe(0);
  const log = await json('log', ['log', '--repo', fx.repoDir, '--rows']);
  const deleted = (log.entries as { xid: number; tables: { delete: number }[] }[]).find((e) => e.tables.some((t) => t.delete > 0));
  await json('undo', ['undo', '--repo', fx.repoDir, '--xid', String(deleted?.xid)]);
  await json('list', ['list', '--repo', fx.repoDir]);
  await json('list:several', ['list', '--repo', fx.repoDir, '--repo', `${copies.copy(fx.repoDir)}?name=copy`]);
  await json('verify', ['verify', '--repo', fx.repoDir]);
  await json('restore', ['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('restored'), '--to', 'latest']);
  await json('restore:dry-run', ['restore', '--repo', fx.repoDir, '--target', fx.cluster.url('planned'), '--to', 'mark:before-delete', '--dry-run']);
  await json('drill', ['drill', '--repo', fx.repoDir, '--target', fx.cluster.url('drilled'), '--source', fx.source]);
  await json('prune', ['prune', '--repo', copies.copy(fx.repoDir), '--retention', '1ms']);
  await json('prune:several', ['prune', '--repo', `${copies.copy(fx.repoDir)}?retention=1ms`, '--repo', copies.copy(fx.repoDir), '--retention', '30d']);
  await json('compact', ['compact', '--repo', copies.copy(fx.repoDir), '--older-than', '1ms']);
  const copied = path.join(copies.copy(fx.repoDir), 'copied');
  await json('copy', ['copy', '--from', fx.repoDir, '--into', copied]);
  await json('verify:several', ['verify', '--repo', fx.repoDir, '--repo', copied]);
  rmSync(path.join(copied, 'repository.json'));
  await json('verify:repair', ['verify', '--repo', fx.repoDir, '--repo', copied, '--repair']);
  await json('error', ['list', '--repo', fx.repoDir, '--bogus'], 2);
});
afterAll(async () => {
  copies.removeAll();
  await fx.destroy();
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const schemaOf = (name: string): Record<string, Json> =>
  JSON.parse(readFileSync(path.join(SCHEMAS, `${name.replace(/:.*/, '')}.schema.json`), 'utf8')) as Record<string, Json>;

/** The schema with every object closed: a field the output has and the schema does not document fails. */
function closed(schema: Json): Json {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const copy = Object.fromEntries(
    Object.entries(schema).map(([k, v]) => [
      k,
      k === 'properties' ? Object.fromEntries(Object.entries(v as Record<string, Json>).map(([p, s]) => [p, closed(s)])) : closed(v),
    ]),
  );
  if ('properties' in schema && !('additionalProperties' in schema)) copy.additionalProperties = false;
  return copy;
}

/** Every (field name, value) of a document, however deep, except inside row images (the user's column names). */
function* fields(value: Json, key = ''): Generator<[string, Json]> {
  if (Array.isArray(value)) for (const item of value) yield* fields(item, key);
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) {
      yield [k, v];
      if (k !== 'old' && k !== 'new') yield* fields(v, k);
    }
}
const typeOf = (v: Json): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

test('every document carries formatVersion 1, and each command with --json has its schema in docs/json', () => {
  for (const [name, doc] of docs) expect({ name, formatVersion: (doc as { formatVersion?: unknown }).formatVersion }).toEqual({ name, formatVersion: 1 });
  const schemas = readdirSync(SCHEMAS).map((f) => f.replace(/\.schema\.json$/, ''));
  expect(schemas.sort()).toEqual([...new Set([...docs.keys()].map((n) => n.replace(/:.*/, '')))].sort());
});

test('each document matches its schema, which documents every field it has', () => {
  const ajv = new Ajv({ allErrors: true });
  for (const [name, doc] of docs) {
    const open = ajv.compile(schemaOf(name));
    expect({ name, errors: open(doc) ? null : open.errors }).toEqual({ name, errors: null });
    const strict = ajv.compile(closed(schemaOf(name)) as object);
    expect({ name, undocumented: strict(doc) ? null : strict.errors }).toEqual({ name, undocumented: null });
  }
  // the schemas are not empty promises: a wrong type fails, and so does an undocumented field
  expect(ajv.compile(closed(schemaOf('mark')) as object)({ ...(docs.get('mark') as object), extra: 1 })).toBe(false);
  const status = ajv.compile(schemaOf('status'));
  expect(status({ ...(docs.get('status') as object), rpoSeconds: '1.5' })).toBe(false);
  expect(status({ ...(docs.get('status') as object), formatVersion: 2 })).toBe(false);
});

test('a field has one type everywhere: xid a number, LSNs "X/Y", times ISO with microseconds', () => {
  const seen = new Map<string, Set<string>>();
  for (const [name, doc] of docs)
    for (const [key, value] of fields(doc as Json)) {
      if (value === null) continue;
      const where = `${name}.${key}`;
      if (/^xid$/i.test(key)) expect({ where, value: typeOf(value) }).toEqual({ where, value: 'number' });
      if (/(^lsn|Lsn)$/.test(key) || key === 'consistentPoint')
        expect({ where, value }).toEqual({ where, value: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/) });
      if (/(^time|Time|At|Start)$/.test(key))
        expect({ where, value }).toEqual({ where, value: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/) });
      const types = seen.get(key) ?? new Set<string>();
      types.add(typeOf(value));
      seen.set(key, types);
    }
  expect(seen.get('xid')).toEqual(new Set(['number']));
  // names that mean a count or a name in one document and a list or summary in another, named here rather than silently
  // (tables: a backup's count, a drill's list; seconds: a backup's duration, a restore's {total, load, replay}; backup: an id, or
  // the backup's facts)
  const SEVERAL = new Set(['tables', 'rows', 'segments', 'target', 'seconds', 'slot', 'repository', 'source', 'backup']);
  const mixed = [...seen].filter(([key, types]) => types.size > 1 && !SEVERAL.has(key)).map(([key, types]) => `${key}: ${[...types].join(', ')}`);
  expect(mixed).toEqual([]);
});
