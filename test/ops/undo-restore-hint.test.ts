import { restoreBeforeCommand } from '../../src/ops/undo-restore-hint';

test('the restore command of a refusal is complete: repository, side database, just before the transaction', () => {
  expect(restoreBeforeCommand({ repo: '/var/lib/pitr/shop', sourceUrl: 'postgresql://postgres@db1:5432/shop', database: 'shop' }, 742, ['public.orders'])).toBe(
    'pitr restore --repo /var/lib/pitr/shop --target postgresql://postgres@db1:5432/shop_before_742 --to xid:742 --exclusive --tables public.orders',
  );
  // the whole database (DDL), without a source: the libpq environment's server
  expect(restoreBeforeCommand({ repo: 'gs://backups/shop', database: 'shop' }, 9)).toBe(
    'pitr restore --repo gs://backups/shop --target postgresql:///shop_before_9 --to xid:9 --exclusive',
  );
});

test("the source's password is left out, its parameters kept, and words a shell would split are quoted", () => {
  expect(
    restoreBeforeCommand({ repo: '/tmp/my repo', sourceUrl: 'postgresql://app:p%40ss@db1/shop?sslmode=require', database: 'shop' }, 7, ['public.a', "it's.b"]),
  ).toBe(
    "pitr restore --repo '/tmp/my repo' --target 'postgresql://app@db1/shop_before_7?sslmode=require' --to xid:7 --exclusive --tables 'public.a,it'\\''s.b'",
  );
});

test('several repositories given: the restore command names each, in the order given', () => {
  expect(restoreBeforeCommand({ repo: ['/var/lib/pitr/shop', 'gs://backups/shop?name=eu'], database: 'shop' }, 9)).toBe(
    "pitr restore --repo /var/lib/pitr/shop --repo 'gs://backups/shop?name=eu' --target postgresql:///shop_before_9 --to xid:9 --exclusive",
  );
});
