import { capturedStatement, firesDdlTrigger, splitStatements } from '../src/restore/sql-statements';

test('splits on semicolons outside quotes, dollar quotes and comments', () => {
  const sql = `UPDATE t SET a = 'x;y'; -- c;omment
CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; /* a /* nested; */ ; */ ALTER TABLE "we;ird" ADD b text; SELECT E'it\\'s;'`;
  expect(splitStatements(sql)).toEqual([
    "UPDATE t SET a = 'x;y'",
    '-- c;omment\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql',
    '/* a /* nested; */ ; */ ALTER TABLE "we;ird" ADD b text',
    "SELECT E'it\\'s;'",
  ]);
});

test('picks the DDL statement that fired the trigger', () => {
  const sql = 'update orders set x = 1; alter table orders add column note text; delete from orders; create index on orders (x)';
  expect(capturedStatement(sql, 0)).toBe('alter table orders add column note text');
  expect(capturedStatement(sql, 1)).toBe('create index on orders (x)');
  expect(capturedStatement('ALTER TABLE t ADD c int', 0)).toBe('ALTER TABLE t ADD c int');
  expect(firesDdlTrigger('CREATE DATABASE x')).toBe(false);
  expect(firesDdlTrigger('  grant select on t to u')).toBe(true);
});
