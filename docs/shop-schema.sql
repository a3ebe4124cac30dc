-- The shop of the README's Quick start and of "pitr demo" (src/demo/shop-database.ts): 3 tables, 200 rows.
CREATE TABLE customers (
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
