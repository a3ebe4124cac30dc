/**
 * The fidelity suite's source database and workload: tables that stress replay (every type, a no-key
 * table with duplicate rows, partitions, generated and identity columns, a cascading foreign key) and
 * ~25 seeded steps over them, ending in an accidental DELETE.
 */
import type { Client } from 'pg';
import { TYPE_ZOO_INSERT_SQL, TYPE_ZOO_SETUP_SQL } from '../fixtures/type-zoo';

export const SETUP_SQL = `
${TYPE_ZOO_SETUP_SQL}
${TYPE_ZOO_INSERT_SQL}

-- no key at all: every UPDATE/DELETE is matched on the whole old row; some rows are exact duplicates,
-- with NULLs in them (NULL = NULL is not true: a replay matching with = finds nothing)
CREATE TABLE public.dup_log (at timestamptz, level text, message text, amount numeric, ratio double precision);
ALTER TABLE public.dup_log REPLICA IDENTITY FULL;
INSERT INTO public.dup_log VALUES
  ('2026-01-01 00:00:00.000001+00', 'info', 'dup-a', NULL, 0.1),
  ('2026-01-01 00:00:00.000001+00', 'info', 'dup-a', NULL, 0.1),
  ('2026-01-02 00:00:00+00', NULL, 'dup-b', 1.50, -0.0),
  ('2026-01-02 00:00:00+00', NULL, 'dup-b', 1.50, -0.0);
INSERT INTO public.dup_log SELECT timestamptz '2026-01-03 00:00:00+00' + g * interval '1 minute', 'debug', 'line ' || g, g, 1.0 / g
  FROM generate_series(1, 20) g;

CREATE TABLE public.measurements (id integer NOT NULL, at date NOT NULL, value double precision, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.measurements_2025 PARTITION OF public.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.measurements_2026 PARTITION OF public.measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.measurements_other PARTITION OF public.measurements DEFAULT;
INSERT INTO public.measurements SELECT g, date '2025-01-01' + (g * 11) % 700, g * 1.5 FROM generate_series(1, 60) g;

CREATE TABLE public.items (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku text NOT NULL,
  qty integer NOT NULL,
  price numeric(10,2) NOT NULL,
  total numeric GENERATED ALWAYS AS (qty * price) STORED
);
INSERT INTO public.items (sku, qty, price) SELECT 'sku-' || g, g, g * 0.25 FROM generate_series(1, 12) g;

CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
INSERT INTO public.customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 30) g;
CREATE TABLE public.orders (
  id bigserial PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES public.customers (id) ON DELETE CASCADE,
  amount numeric(12,2) NOT NULL,
  placed_at timestamptz NOT NULL,
  note text
);
INSERT INTO public.orders (customer_id, amount, placed_at, note)
  SELECT 1 + g % 30, (g * 3.17)::numeric(12,2), timestamptz '2026-01-01 00:00:00.000001+00' + g * interval '1 hour 1.000001 second',
         CASE WHEN g % 7 = 0 THEN NULL ELSE 'order ' || g END
  FROM generate_series(1, 300) g;
`;

/** Sequences whose values a `latest` restore must carry over. */
export const SEQUENCES = ['public.customers_id_seq', 'public.orders_id_seq', 'public.items_id_seq'];

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface StepContext {
  client: Client;
  random: () => number;
  /** runs `pitr mark NAME` against the source */
  mark(name: string): Promise<void>;
  /** the xid of the accidental DELETE, set by that step */
  accidentXid?: string;
}

export interface Step {
  name: string;
  run(ctx: StepContext): Promise<void>;
}

const int = (random: () => number, lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
function pick<T>(random: () => number, values: readonly T[]): T {
  return values[Math.floor(random() * values.length)] as T;
}
function sample<T>(random: () => number, values: readonly T[], n: number): T[] {
  const pool = [...values];
  const out: T[] = [];
  while (out.length < n && pool.length > 0) out.push(pool.splice(Math.floor(random() * pool.length), 1)[0] as T);
  return out;
}

async function tx(client: Client, statements: (string | [string, unknown[]])[]): Promise<void> {
  await client.query('BEGIN');
  try {
    for (const s of statements) {
      if (typeof s === 'string') await client.query(s);
      else await client.query(s[0], s[1]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

async function ids(client: Client, sql: string, params: unknown[] = []): Promise<number[]> {
  return (await client.query<{ id: string }>(sql, params)).rows.map((r) => Number(r.id));
}

async function newOrders(ctx: StepContext, count: number): Promise<[string, unknown[]][]> {
  const customers = await ids(ctx.client, 'SELECT id FROM customers ORDER BY id');
  return Array.from({ length: count }, () => [
    `INSERT INTO orders (customer_id, amount, placed_at, note) VALUES ($1, $2, clock_timestamp(), $3)`,
    [pick(ctx.random, customers), (int(ctx.random, 1, 999_999) / 100).toFixed(2), ctx.random() < 0.2 ? null : `note ${int(ctx.random, 1, 1e6)}`],
  ]);
}

/** Index (1-based) of the step after which the second backup is taken. */
export const SECOND_BACKUP_AFTER = 15;

export const STEPS: Step[] = [
  {
    name: 'new customers, each with orders, in one transaction',
    async run(ctx) {
      const statements: (string | [string, unknown[]])[] = [];
      const n = int(ctx.random, 1, 3);
      for (let i = 0; i < n; i++) {
        const tag = int(ctx.random, 1000, 9999);
        statements.push([`INSERT INTO customers (name, email) VALUES ($1, $2)`, [`new ${tag}`, `n${tag}-${i}@example.com`]]);
        for (let k = int(ctx.random, 1, 4); k > 0; k--)
          statements.push([`INSERT INTO orders (customer_id, amount, placed_at) VALUES (currval('customers_id_seq'), $1, clock_timestamp())`, [k * 10.5]]);
      }
      await tx(ctx.client, statements);
    },
  },
  {
    name: 'zoo row 1 updated, its TOASTed c_big_text left unchanged',
    async run(ctx) {
      await tx(ctx.client, [
        [`UPDATE type_zoo SET c_integer = c_integer + $1, c_text = $2 WHERE id = 1`, [int(ctx.random, 1, 99), `updated ${int(ctx.random, 1, 1e6)}`]],
      ]);
    },
  },
  {
    name: 'items inserted (identity ids, generated totals)',
    async run(ctx) {
      const n = int(ctx.random, 2, 4);
      await tx(
        ctx.client,
        Array.from({ length: n }, (_, i): [string, unknown[]] => [
          'INSERT INTO items (sku, qty, price) VALUES ($1, $2, $3)',
          [`sku-new-${i}`, int(ctx.random, 1, 50), (int(ctx.random, 1, 99_999) / 100).toFixed(2)],
        ]),
      );
    },
  },
  {
    name: 'one of two identical no-key rows updated',
    async run(ctx) {
      await tx(ctx.client, [`UPDATE dup_log SET level = 'warn' WHERE ctid = (SELECT ctid FROM dup_log WHERE message = 'dup-b' LIMIT 1)`]);
    },
  },
  {
    name: 'exactly one of two identical no-key rows (with NULLs) deleted',
    async run(ctx) {
      await tx(ctx.client, [`DELETE FROM dup_log WHERE ctid = (SELECT ctid FROM dup_log WHERE message = 'dup-a' LIMIT 1)`]);
    },
  },
  {
    name: 'a measurement moves from the 2025 partition to the 2026 one',
    async run(ctx) {
      const candidates = await ids(ctx.client, 'SELECT id FROM measurements_2025 WHERE at < $1 ORDER BY id', ['2025-12-01']);
      await tx(ctx.client, [[`UPDATE measurements SET at = at + 365, value = value * 2 WHERE id = $1`, [pick(ctx.random, candidates)]]]);
    },
  },
  {
    name: 'random order updates and a delete',
    async run(ctx) {
      const orders = await ids(ctx.client, 'SELECT id FROM orders ORDER BY id');
      const chosen = sample(ctx.random, orders, 6);
      await tx(ctx.client, [
        [`UPDATE orders SET amount = amount + 1.01, note = coalesce(note, '') || ' +' WHERE id = ANY($1::bigint[])`, [chosen.slice(0, 5)]],
        [`DELETE FROM orders WHERE id = $1`, [chosen[5]]],
      ]);
    },
  },
  {
    name: 'zoo: a TOASTed value changed, json rewritten with duplicate keys',
    async run(ctx) {
      await tx(ctx.client, [
        `UPDATE type_zoo SET c_big_text = reverse(c_big_text) WHERE id = 3`,
        [
          `UPDATE type_zoo SET c_json = $1::text::json, c_jsonb = $1::text::jsonb WHERE id = 2`,
          [`{"b": ${int(ctx.random, 1, 9)},   "b" : "dup",\n "ü": null}`],
        ],
      ]);
    },
  },
  {
    name: 'a rolled-back transaction, and one with a rolled-back savepoint',
    async run(ctx) {
      await ctx.client.query('BEGIN');
      await ctx.client.query(`INSERT INTO items (sku, qty, price) VALUES ('never', 1, 1)`);
      await ctx.client.query(`DELETE FROM dup_log`);
      await ctx.client.query('ROLLBACK');
      await ctx.client.query('BEGIN');
      await ctx.client.query(`INSERT INTO customers (name, email) VALUES ('kept', 'kept@example.com')`);
      await ctx.client.query('SAVEPOINT s1');
      await ctx.client.query(`INSERT INTO customers (name, email) VALUES ('undone', 'undone@example.com')`);
      await ctx.client.query(`UPDATE items SET qty = 0`);
      await ctx.client.query('ROLLBACK TO SAVEPOINT s1');
      await ctx.client.query(`UPDATE items SET qty = qty + 1 WHERE id = 1`);
      await ctx.client.query('COMMIT');
    },
  },
  {
    name: 'TRUNCATE the no-key table',
    async run(ctx) {
      await tx(ctx.client, ['TRUNCATE dup_log']);
    },
  },
  {
    name: 'identical rows again (three of them) in the no-key table',
    async run(ctx) {
      const v = int(ctx.random, 1, 100);
      await tx(ctx.client, [
        [`INSERT INTO dup_log SELECT '2026-02-01 00:00:00+00', 'info', 'triple', $1, NULL FROM generate_series(1, 3)`, [v]],
        [`INSERT INTO dup_log VALUES (NULL, NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL, NULL)`, []],
      ]);
    },
  },
  {
    name: 'items: quantities changed (generated total follows), one deleted',
    async run(ctx) {
      const items = await ids(ctx.client, 'SELECT id FROM items ORDER BY id');
      const [a, b, c] = sample(ctx.random, items, 3);
      await tx(ctx.client, [
        [`UPDATE items SET qty = qty * 3 WHERE id = ANY($1::bigint[])`, [[a, b]]],
        [`DELETE FROM items WHERE id = $1`, [c]],
      ]);
    },
  },
  {
    name: 'DDL: ALTER TABLE customers ADD COLUMN with a default (no row changes in the stream)',
    async run(ctx) {
      await tx(ctx.client, [`ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'basic'`]);
    },
  },
  {
    name: 'the new column used',
    async run(ctx) {
      const customers = await ids(ctx.client, 'SELECT id FROM customers ORDER BY id');
      await tx(ctx.client, [
        [`UPDATE customers SET tier = 'gold' WHERE id = ANY($1::int[])`, [sample(ctx.random, customers, 4)]],
        [`INSERT INTO customers (name, email, tier) VALUES ('platinum one', 'p1@example.com', 'platinum')`, []],
      ]);
    },
  },
  {
    name: 'DDL: CREATE TABLE notes + inserts, in one transaction',
    async run(ctx) {
      await tx(ctx.client, [
        `CREATE TABLE notes (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id), body text, at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00')`,
        [`INSERT INTO notes (id, customer_id, body) SELECT g, 1 + g % 3, 'note ' || g || ' ' || $1 FROM generate_series(1, 5) g`, [int(ctx.random, 1, 1e6)]],
      ]);
    },
  },
  // ---- second backup here (SECOND_BACKUP_AFTER = 15) ----
  {
    name: 'TRUNCATE items RESTART IDENTITY, then inserts, in one transaction',
    async run(ctx) {
      await tx(ctx.client, [
        'TRUNCATE items RESTART IDENTITY',
        [`INSERT INTO items (sku, qty, price) SELECT 'restart-' || g, g * $1, 0.5 FROM generate_series(1, 3) g`, [int(ctx.random, 1, 9)]],
      ]);
    },
  },
  {
    name: 'a customer deleted: its orders go with it (ON DELETE CASCADE)',
    async run(ctx) {
      const candidates = await ids(
        ctx.client,
        'SELECT id FROM customers c WHERE id > 3 AND EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id) ORDER BY id',
      );
      await tx(ctx.client, [[`DELETE FROM customers WHERE id = $1`, [pick(ctx.random, candidates)]]]);
    },
  },
  {
    name: 'measurements: one moves into the default partition, new ones arrive',
    async run(ctx) {
      const candidates = await ids(ctx.client, 'SELECT id FROM measurements_2026 ORDER BY id');
      await tx(ctx.client, [
        [`UPDATE measurements SET at = '2031-06-30' WHERE id = $1`, [pick(ctx.random, candidates)]],
        [`INSERT INTO measurements SELECT 1000 + g, date '2025-06-01' + g * 200, $1::float8 / g FROM generate_series(1, 4) g`, [int(ctx.random, 1, 1000)]],
      ]);
    },
  },
  {
    name: 'zoo: a row deleted, two rows copied under new ids (one with the 1.4 MB value)',
    async run(ctx) {
      await tx(ctx.client, [
        'DELETE FROM type_zoo WHERE id = 5',
        `INSERT INTO type_zoo SELECT (jsonb_populate_record(z, '{"id": 9}')).* FROM type_zoo z WHERE id = 2`,
        `INSERT INTO type_zoo SELECT (jsonb_populate_record(z, '{"id": 10}')).* FROM type_zoo z WHERE id = 3`,
      ]);
    },
  },
  {
    name: 'more orders',
    async run(ctx) {
      await tx(ctx.client, await newOrders(ctx, int(ctx.random, 3, 8)));
    },
  },
  {
    name: 'pitr mark before-accident',
    async run(ctx) {
      await ctx.mark('before-accident');
    },
  },
  {
    name: 'the accident: DELETE FROM orders',
    async run(ctx) {
      await ctx.client.query('BEGIN');
      try {
        ctx.accidentXid = (await ctx.client.query<{ xid: string }>('SELECT txid_current()::text AS xid')).rows[0]?.xid;
        const { rowCount } = await ctx.client.query('DELETE FROM orders');
        if ((rowCount ?? 0) < 100) throw new Error(`the accident deleted only ${rowCount} rows`);
        await ctx.client.query('COMMIT');
      } catch (error) {
        await ctx.client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    },
  },
  {
    name: 'life goes on: new orders after the accident, one row touched several times in a transaction',
    async run(ctx) {
      await tx(ctx.client, [
        ...(await newOrders(ctx, int(ctx.random, 2, 5))),
        `UPDATE orders SET amount = amount * 2 WHERE id = currval('orders_id_seq')`,
        `UPDATE orders SET amount = amount + 0.01, note = 'twice' WHERE id = currval('orders_id_seq')`,
        `INSERT INTO orders (customer_id, amount, placed_at) VALUES (1, 1, '2026-01-01 00:00:00+00')`,
        `DELETE FROM orders WHERE id = currval('orders_id_seq')`,
      ]);
    },
  },
  {
    name: 'zoo row 1 updated again (TOAST unchanged), a zoo key changed and reused, a no-key duplicate deleted',
    async run(ctx) {
      await tx(ctx.client, [
        `UPDATE type_zoo SET id = 100 WHERE id = 7`,
        `INSERT INTO type_zoo (id, c_text, c_mood) VALUES (7, 'the key 7 again', 'ok')`,
        `UPDATE type_zoo SET id = 101, c_integer = 0 WHERE id = 1`,
        `UPDATE type_zoo SET id = 1 WHERE id = 101`,
        [`UPDATE type_zoo SET c_bigint = c_bigint - $1, c_interval = c_interval + interval '1 microsecond' WHERE id = 1`, [int(ctx.random, 1, 99)]],
        `DELETE FROM dup_log WHERE ctid = (SELECT ctid FROM dup_log WHERE message = 'triple' LIMIT 1)`,
        `UPDATE dup_log SET level = 'x' WHERE ctid = (SELECT ctid FROM dup_log WHERE message IS NULL LIMIT 1)`,
      ]);
    },
  },
  {
    name: 'DDL: ALTER TABLE items ADD COLUMN, then filled',
    async run(ctx) {
      await tx(ctx.client, ['ALTER TABLE items ADD COLUMN note text', [`UPDATE items SET note = 'n' || id * $1 WHERE id % 2 = 1`, [int(ctx.random, 2, 9)]]]);
    },
  },
  {
    name: 'DDL and DML in one multi-statement query string (semicolons inside literals and $$ bodies)',
    async run(ctx) {
      // one simple-protocol query: one implicit transaction, and the DDL trigger sees the whole string
      await ctx.client.query(
        `CREATE TABLE tags (id integer PRIMARY KEY, label text NOT NULL); ` +
          `INSERT INTO tags VALUES (1, 'a;b'), (2, $$c;d$$), (${int(ctx.random, 3, 99)}, E'e\\;f'); ` +
          `CREATE FUNCTION tag_count() RETURNS bigint LANGUAGE sql AS $fn$ SELECT count(*) FROM tags; $fn$; ` +
          `ALTER TABLE tags ADD COLUMN note text DEFAULT 'x;y'; ` +
          `UPDATE tags SET label = label || '!' WHERE id = 1; ` +
          `ALTER TABLE items ADD COLUMN tag_id integer; ` +
          `UPDATE items SET tag_id = 2 WHERE id = 1`,
      );
    },
  },
];
