import { rmSync } from 'node:fs';
import { readBackupManifest } from '../../src/restore/load-backup';
import { TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL } from '../fixtures/type-zoo';
import { ArchiveFixture } from '../harness/archive-fixture';
import { loadBackup } from '../harness/backup-loader';
import { runPitr } from '../harness/pitr-process';
import { rawRows, withRawClient } from './backup-helpers';
import type { BackupManifest } from '../../src/archive/backup-manifest';

let fx: ArchiveFixture;
const extraDirs: string[] = [];

const SCHEMA_SQL = `
CREATE TABLE public.measurements (id bigint NOT NULL, at date NOT NULL, reading numeric, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measurements_2025 PARTITION OF public.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.measurements_2026 PARTITION OF public.measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO public.measurements SELECT g, date '2024-01-01' + (g * 7) % 1095, g / 7.0 FROM generate_series(1, 600) g;

CREATE TABLE public.orders (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  qty integer NOT NULL CHECK (qty > 0),
  price numeric(10,2) NOT NULL,
  total numeric GENERATED ALWAYS AS (qty * price) STORED,
  note text UNIQUE
);
CREATE INDEX orders_price_idx ON public.orders (price DESC) WHERE qty > 1;
INSERT INTO public.orders (qty, price, note) SELECT 1 + g % 5, g * 1.25, 'order ' || g FROM generate_series(1, 120) g;
DELETE FROM public.orders WHERE id % 10 = 0;
CREATE TABLE public.order_lines (order_id integer NOT NULL REFERENCES public.orders (id), line integer NOT NULL, PRIMARY KEY (order_id, line));
INSERT INTO public.order_lines SELECT id, l FROM public.orders, generate_series(1, 2) l;

CREATE SEQUENCE public.used_seq START 100 INCREMENT 3;
SELECT nextval('public.used_seq') FROM generate_series(1, 4);
CREATE SEQUENCE public.unused_seq START 7;

CREATE TABLE public.empty_table (id integer PRIMARY KEY, label text NOT NULL DEFAULT 'none');

CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed ""Quoted"" Name" ("Col One" integer PRIMARY KEY, gone text, "select" text);
ALTER TABLE "Odd Schema"."Mixed ""Quoted"" Name" DROP COLUMN gone;
INSERT INTO "Odd Schema"."Mixed ""Quoted"" Name" SELECT g, 'v' || g FROM generate_series(1, 50) g;

CREATE UNLOGGED TABLE public.scratch (id integer);
INSERT INTO public.scratch VALUES (1), (2);
CREATE MATERIALIZED VIEW public.order_totals AS SELECT qty, sum(total) AS total FROM public.orders GROUP BY qty;
`;

/** Each table (leaf or parent) and the ORDER BY that makes its rows comparable. */
const TABLES: Record<string, string> = {
  'public.type_zoo': 'id',
  'public.measurements': 'id, at',
  'public.measurements_2024': 'id, at',
  'public.measurements_2025': 'id, at',
  'public.measurements_2026': 'id, at',
  'public.orders': 'id',
  'public.order_lines': 'order_id, line',
  'public.empty_table': 'id',
  '"Odd Schema"."Mixed ""Quoted"" Name"': '1',
  'public.order_totals': 'qty',
};
/** What the manifest lists: leaf tables only (no partitioned parent, materialized view, unlogged table or pitr's own). */
const BACKED_UP = [
  'public.type_zoo',
  'public.measurements_2024',
  'public.measurements_2025',
  'public.measurements_2026',
  'public.orders',
  'public.order_lines',
  'public.empty_table',
  'Odd Schema.Mixed "Quoted" Name',
];

const CATALOG_QUERIES = {
  indexes: `SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname IN ('public', 'Odd Schema') ORDER BY 1, 2, 3`,
  constraints: `SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE connamespace IN ('public'::regnamespace, '"Odd Schema"'::regnamespace) ORDER BY 1, 2`,
  sequences: `SELECT schemaname, sequencename, start_value, increment_by, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1, 2`,
  // in column order (not ordinal_position itself: a dropped column leaves a gap in the source only)
  columns: `SELECT table_schema, table_name, column_name, data_type, is_generated, generation_expression, is_identity, identity_generation
              FROM information_schema.columns WHERE table_schema IN ('public', 'Odd Schema') ORDER BY 1, 2, ordinal_position`,
  relations: `SELECT relnamespace::regnamespace::text, relname, relkind, relpersistence FROM pg_class
               WHERE relnamespace IN ('public'::regnamespace, '"Odd Schema"'::regnamespace) ORDER BY 1, 2`,
};

async function snapshotOf(url: string): Promise<Record<string, (string | null)[][]>> {
  return withRawClient(url, async (client) => {
    const out: Record<string, (string | null)[][]> = {};
    for (const [table, order] of Object.entries(TABLES)) out[table] = await rawRows(client, `SELECT * FROM ONLY ${table} ORDER BY ${order}`);
    out['parent: public.measurements'] = await rawRows(client, 'SELECT * FROM public.measurements ORDER BY id, at');
    for (const seq of ['public.used_seq', 'public.unused_seq', 'public.orders_id_seq'])
      out[`sequence ${seq}`] = await rawRows(client, `SELECT last_value, is_called FROM ${seq}`);
    for (const [name, sql] of Object.entries(CATALOG_QUERIES)) out[name] = await rawRows(client, sql);
    return out;
  });
}

/** Row count of each permanent ordinary table (leaf partitions included) of the source's user schemas. */
function sourceRowCounts(): Promise<{ name: string; n: number }[]> {
  return fx.cluster.query<{ name: string; n: number }>(
    `SELECT c.relname AS name, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM ONLY %s', c.oid::regclass), false, true, '')))[1]::text::int AS n
       FROM pg_class c WHERE c.relnamespace IN ('public'::regnamespace, '"Odd Schema"'::regnamespace) AND c.relkind = 'r' AND c.relpersistence = 'p'`,
  );
}

async function backup(source: string, repoDir: string, extra: string[] = []): Promise<BackupManifest> {
  const result = await runPitr(['backup', '--source', source, '--repo', repoDir, '--json', ...extra]);
  expect(result.stderr).not.toMatch(/"level":(40|50|60)/);
  expect(result.code).toBe(0);
  const { id } = JSON.parse(result.stdout) as { id: string };
  return readBackupManifest(fx.repository(), id);
}

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  await fx.cluster.psql(TYPE_ZOO_SETUP_SQL + TYPE_ZOO_INSERT_SQL + SCHEMA_SQL);
  expect((await fx.init()).code).toBe(0);
});
afterAll(async () => {
  await fx.destroy();
  for (const dir of extraDirs) rmSync(dir, { recursive: true, force: true });
});

test('a backup loaded into an empty database has every row, sequence, index, constraint and materialized view of the source', async () => {
  const manifest = await backup(fx.source, fx.repoDir);

  // leaf partitions and ordinary tables; the partitioned parent holds no rows; pitr's own schema is left out
  expect(manifest.tables.map((t) => `${t.schema}.${t.name}`).sort()).toEqual([...BACKED_UP].sort());
  expect(manifest.tables.find((t) => t.schema === 'Odd Schema')?.columns).toEqual(['Col One', 'select']);
  const orders = manifest.tables.find((t) => t.name === 'orders');
  expect(orders?.columns).toEqual(['id', 'qty', 'price', 'note']);
  const counts = await sourceRowCounts();
  expect(counts).toHaveLength(BACKED_UP.length);
  for (const { name, n } of counts) expect({ name, rows: manifest.tables.find((t) => t.name === name)?.rows }).toEqual({ name, rows: n });
  expect(manifest.totals.rows).toBe(counts.reduce((sum, c) => sum + c.n, 0));
  expect(manifest.tables.find((t) => t.name === 'empty_table')).toMatchObject({ rows: 0, chunks: [{ rows: 0 }] });
  expect(manifest.sequences).toEqual([
    { schema: 'public', name: 'orders_id_seq', lastValue: '120' },
    { schema: 'public', name: 'unused_seq', lastValue: null },
    { schema: 'public', name: 'used_seq', lastValue: '109' },
  ]);

  await fx.cluster.query('CREATE DATABASE restored');
  await loadBackup(fx.repository(), manifest.id, fx.cluster.url('restored'));
  const [source, restored] = [await snapshotOf(fx.source), await snapshotOf(fx.cluster.url('restored'))];
  expect(restored).toEqual(source);

  // the comparison was not vacuous
  expect(source['public.type_zoo']).toHaveLength(8);
  expect(source['public.measurements_2024']?.length).toBeGreaterThan(100);
  expect(source['public.measurements_2025']?.length).toBeGreaterThan(100);
  expect(source['public.measurements_2026']?.length).toBeGreaterThan(100);
  expect(source['public.orders']).toHaveLength(108);
  expect(source.indexes?.map((r) => r[2])).toEqual(
    expect.arrayContaining(['orders_price_idx', 'orders_note_key', 'order_lines_pkey', 'measurements_2025_pkey']),
  );
  expect(source.constraints?.map((r) => r[1])).toEqual(expect.arrayContaining(['order_lines_order_id_fkey', 'orders_qty_check']));

  await withRawClient(fx.cluster.url('restored'), async (client) => {
    // computed by the target, not copied
    expect(await rawRows(client, 'SELECT count(*) FROM orders WHERE total IS DISTINCT FROM qty * price')).toEqual([['0']]);
    expect(await rawRows(client, "SELECT total FROM orders WHERE note = 'order 7'")).toEqual([['26.25']]);
    // sequences continue where the source's would
    expect(await rawRows(client, "SELECT nextval('used_seq'), nextval('unused_seq')")).toEqual([['112', '7']]);
    expect(await rawRows(client, 'INSERT INTO orders (qty, price) VALUES (1, 1) RETURNING id, total')).toEqual([['121', '1.00']]);
    // constraints are enforced
    await expect(client.query('INSERT INTO order_lines VALUES (10, 1)')).rejects.toThrow(/violates foreign key constraint "order_lines_order_id_fkey"/);
    await expect(client.query("INSERT INTO measurements VALUES (1, '2024-01-08', 0)")).rejects.toThrow(/duplicate key value violates unique constraint/);
    // an unlogged table's rows are not backed up (its definition is); a materialized view is refreshed by post-data
    expect(await rawRows(client, 'SELECT count(*) FROM scratch')).toEqual([['0']]);
    expect(await rawRows(client, 'SELECT count(*) FROM order_totals')).toEqual([['5']]);
    // rows landed in the right partitions
    expect(await rawRows(client, "SELECT count(*) FROM measurements_2026 WHERE at < '2026-01-01'")).toEqual([['0']]);
  });
});

test('a backup of a database without user tables succeeds with 0 tables', async () => {
  await fx.cluster.query('CREATE DATABASE nothing');
  const repoDir = `${fx.repoDir}-nothing`;
  extraDirs.push(repoDir);
  const init = await runPitr(['init', '--source', fx.cluster.url('nothing'), '--repo', repoDir, '--slot', 'pitr_nothing']);
  expect(init.code).toBe(0);
  const result = await runPitr(['backup', '--source', fx.cluster.url('nothing'), '--repo', repoDir, '--json']);
  expect(result.stderr).not.toMatch(/"level":(40|50|60)/);
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout)).toMatchObject({ tables: 0, chunks: 0, rows: 0 });
  await fx.cluster.query('SELECT pg_drop_replication_slot($1)', ['pitr_nothing']);
});

test('a big table is split into several chunks that together hold every row', async () => {
  await fx.cluster.psql('CREATE TABLE public.narrow (id integer NOT NULL); INSERT INTO public.narrow SELECT generate_series(1, 2000000);');
  const manifest = await backup(fx.source, fx.repoDir, ['--chunk-size', '8MB']);
  const narrow = manifest.tables.find((t) => t.name === 'narrow');
  expect(narrow?.rows).toBe(2_000_000);
  expect(narrow?.chunks.length).toBeGreaterThanOrEqual(5);
  expect(narrow?.chunks.reduce((n, c) => n + c.rows, 0)).toBe(2_000_000);
  expect(narrow?.chunks.every((c) => c.rows > 0)).toBe(true);
  expect(manifest.totals.chunks).toBe(manifest.tables.reduce((n, t) => n + t.chunks.length, 0));
  expect(manifest.totals.rows).toBe((await sourceRowCounts()).reduce((sum, c) => sum + c.n, 0));

  await fx.cluster.query('CREATE DATABASE restored_big');
  await loadBackup(fx.repository(), manifest.id, fx.cluster.url('restored_big'));
  const summary = 'SELECT count(*)::text AS n, sum(id)::text AS s, count(DISTINCT id)::text AS d FROM narrow';
  expect(await fx.cluster.query(summary, [], 'restored_big')).toEqual([{ n: '2000000', s: '2000001000000', d: '2000000' }]);
});
