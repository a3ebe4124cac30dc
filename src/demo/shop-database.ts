import type { Client } from 'pg';
import { withTransaction } from '../pg/with-client';

/**
 * The demo's small shop: customers, orders and order_items, keys from sequences (serial/bigserial), the
 * items deleted with their order (ON DELETE CASCADE). The data is generated deterministically.
 */
export const SHOP_SCHEMA_SQL = `CREATE TABLE customers (
  id         serial PRIMARY KEY,
  name       text NOT NULL,
  email      text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers,
  status      text NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
  total       numeric(10,2) NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
  id         bigserial PRIMARY KEY,
  order_id   bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
  sku        text NOT NULL,
  quantity   int NOT NULL,
  unit_price numeric(10,2) NOT NULL
);
CREATE INDEX ON order_items (order_id);

INSERT INTO customers (name, email)
  SELECT 'customer ' || i, 'customer' || i || '@example.com' FROM generate_series(1, 20) i;
INSERT INTO orders (customer_id, status, created_at)
  SELECT 1 + (i * 7) % 20, (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + i % 4], now() - (60 - i) * interval '1 hour'
  FROM generate_series(1, 60) i;
INSERT INTO order_items (order_id, sku, quantity, unit_price)
  SELECT o.id, 'SKU-' || (100 + (o.id * 3 + n) % 40), 1 + (o.id + n) % 3, 5 + (o.id * 13 + n * 7) % 50
  FROM orders o, generate_series(1, 1 + o.id % 3) n;
UPDATE orders o SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = o.id);
`;

/** What the accident deletes: the shipped orders (someone meant the cancelled ones). */
export const ACCIDENT_PREDICATE = "status = 'shipped'";
export const ACCIDENT_SQL = `DELETE FROM orders WHERE ${ACCIDENT_PREDICATE}`;

/** The tables the accident touches: orders, and order_items through the cascade. */
export const SHOP_TABLES = ['public.orders', 'public.order_items'] as const;

/**
 * What the demo restores: the tables the accident touched, and customers, which orders references by
 * foreign key, so that the side database keeps that constraint (restored alone, orders would lose it).
 */
export const RESTORE_TABLES = ['public.customers', ...SHOP_TABLES] as const;

export interface TableFingerprint {
  table: string;
  rows: number;
  /** md5 of every row's text in key order: equal fingerprints mean equal contents. */
  md5: string;
}

export async function tableCounts(client: Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ customers: string; orders: string; order_items: string }>(
    'SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM order_items) AS order_items',
  );
  const row = rows[0] as { customers: string; orders: string; order_items: string };
  return { customers: Number(row.customers), orders: Number(row.orders), order_items: Number(row.order_items) };
}

/** One order with 1 to 3 items and its total, in one transaction, like a checkout. */
function placeOrder(client: Client, n: number): Promise<void> {
  return withTransaction(client, async () => {
    const { rows } = await client.query<{ id: string }>("INSERT INTO orders (customer_id, status) VALUES ($1, 'pending') RETURNING id", [1 + ((n * 11) % 20)]);
    const id = (rows[0] as { id: string }).id;
    await client.query(
      `INSERT INTO order_items (order_id, sku, quantity, unit_price)
     SELECT $1, 'SKU-' || (100 + ($2 * 5 + k) % 40), 1 + ($2 + k) % 3, 5 + ($2 * 17 + k * 3) % 50 FROM generate_series(1, 1 + $2 % 3) k`,
      [id, n],
    );
    await client.query('UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = $1) WHERE id = $1', [id]);
  });
}

/** `count` transactions: new orders, and every third one moves an order along (pending → paid → shipped). */
export async function runTraffic(client: Client, count: number, offset = 0): Promise<void> {
  for (let i = 1; i <= count; i++) {
    const n = offset + i;
    if (n % 3 === 0)
      await client.query(
        `UPDATE orders SET status = CASE status WHEN 'pending' THEN 'paid' ELSE 'shipped' END
         WHERE id = (SELECT id FROM orders WHERE status IN ('pending', 'paid') ORDER BY id LIMIT 1)`,
      );
    else await placeOrder(client, n);
  }
}

export interface AccidentResult {
  xid: number;
  orders: number;
  items: number;
}

/** Runs the accidental DELETE in its own transaction and returns its xid and what it removed. */
export async function runAccident(client: Client): Promise<AccidentResult> {
  const { rows, deleted } = await withTransaction(client, async () => {
    const { rows } = await client.query<{ xid: string; items: string }>(
      `SELECT txid_current()::text AS xid, (SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.${ACCIDENT_PREDICATE}) AS items`,
    );
    return { rows, deleted: await client.query(ACCIDENT_SQL) };
  });
  const row = rows[0] as { xid: string; items: string };
  return { xid: Number(row.xid), orders: deleted.rowCount ?? 0, items: Number(row.items) };
}

export async function fingerprint(client: Client, table: string, where = 'true'): Promise<TableFingerprint> {
  // table and where come from this file's constants, never from input
  const { rows } = await client.query<{ rows: string; md5: string | null }>(
    `SELECT count(*) AS rows, md5(string_agg(t::text, E'\\n' ORDER BY t.id)) AS md5 FROM ${table} t WHERE ${where}`,
  );
  const row = rows[0] as { rows: string; md5: string | null };
  return { table, rows: Number(row.rows), md5: row.md5 ?? '' };
}

/** A few of the rows the accident deleted, as text cells, for showing side by side. */
export async function sampleDeletedOrders(client: Client, limit: number): Promise<string[][]> {
  const { rows } = await client.query<Record<string, string>>(
    `SELECT id::text, customer_id::text, status, total::text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS created_utc,
            (SELECT count(*) FROM order_items i WHERE i.order_id = o.id)::text AS items
     FROM orders o WHERE ${ACCIDENT_PREDICATE} ORDER BY id LIMIT ${limit}`,
  );
  return [['id', 'customer_id', 'status', 'total', 'created (UTC)', 'items'], ...rows.map((r) => Object.values(r))];
}
