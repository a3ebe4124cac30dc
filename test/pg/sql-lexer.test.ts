import { commandTag, firesDdlCommandEnd, splitStatements, tokenize, withoutKeyword } from '../../src/pg/sql-lexer';

const texts = (sql: string): string[] => splitStatements(sql).map((s) => s.text);
const one = (sql: string) => {
  const [statement] = splitStatements(sql);
  if (!statement) throw new Error(`no statement in ${sql}`);
  return statement;
};

test('splits on semicolons outside quotes, dollar quotes, comments and parentheses', () => {
  const sql = `UPDATE t SET a = 'x;y'; -- c;omment
CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; /* a /* nested; */ ; */ ALTER TABLE "we;ird" ADD b text; SELECT E'it\\'s;';
CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2));;  ;`;
  expect(texts(sql)).toEqual([
    "UPDATE t SET a = 'x;y'",
    'CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql',
    'ALTER TABLE "we;ird" ADD b text',
    "SELECT E'it\\'s;'",
    'CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2))',
  ]);
});

test('a SQL-standard function body is one statement, as psql splits it', () => {
  const sql = `CREATE OR REPLACE FUNCTION total(a int, b int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > b THEN a ELSE b END; SELECT a + b; END; CREATE INDEX ON t (x)`;
  expect(texts(sql)).toEqual([
    'CREATE OR REPLACE FUNCTION total(a int, b int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > b THEN a ELSE b END; SELECT a + b; END',
    'CREATE INDEX ON t (x)',
  ]);
});

test('backslashes end strings only where PostgreSQL reads them as escapes', () => {
  expect(texts(`SELECT 'a\\'; SELECT 2`)).toEqual([`SELECT 'a\\'`, 'SELECT 2']);
  expect(texts(`SELECT 'a\\'; SELECT 2'; SELECT 3`)).toEqual([`SELECT 'a\\'`, `SELECT 2'; SELECT 3`]);
  expect(splitStatements(`SELECT 'a\\'; SELECT 2'; SELECT 3`, { standardConformingStrings: false }).map((s) => s.text)).toEqual([
    `SELECT 'a\\'; SELECT 2'`,
    'SELECT 3',
  ]);
  expect(texts(`SELECT U&'d\\0061t;a', U&"we;ird", $1; SELECT 2`)).toEqual([`SELECT U&'d\\0061t;a', U&"we;ird", $1`, 'SELECT 2']);
});

test('names the command tag PostgreSQL gives a statement', () => {
  const cases: [string, string | undefined][] = [
    ['CREATE TABLE t (a int GENERATED ALWAYS AS (1) STORED)', 'CREATE TABLE'],
    ['create temporary table t as select 1', 'CREATE TABLE AS'],
    ['CREATE UNLOGGED TABLE t (LIKE s INCLUDING ALL)', 'CREATE TABLE'],
    ['CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (2)', 'CREATE TABLE'],
    ['CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)', 'CREATE INDEX'],
    ['CREATE OR REPLACE VIEW v AS SELECT 1', 'CREATE VIEW'],
    ['CREATE MATERIALIZED VIEW m AS SELECT 1', 'CREATE MATERIALIZED VIEW'],
    ['CREATE CONSTRAINT TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', 'CREATE TRIGGER'],
    ['CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$', 'CREATE PROCEDURE'],
    ['ALTER TABLE t ADD COLUMN c int', 'ALTER TABLE'],
    ['ALTER TYPE mood ADD VALUE IF NOT EXISTS $$x$$', 'ALTER TYPE'],
    ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r', 'ALTER DEFAULT PRIVILEGES'],
    ['DROP INDEX CONCURRENTLY IF EXISTS i', 'DROP INDEX'],
    ['DROP TEXT SEARCH CONFIGURATION c', 'DROP TEXT SEARCH CONFIGURATION'],
    ['COMMENT ON TABLE t IS $$x$$', 'COMMENT'],
    ['GRANT SELECT ON t TO r', 'GRANT'],
    ['REFRESH MATERIALIZED VIEW CONCURRENTLY m', 'REFRESH MATERIALIZED VIEW'],
    ['SELECT a, b INTO new_table FROM t', 'SELECT INTO'],
    ['SELECT a FROM t WHERE a IN (SELECT b INTO x FROM y)', undefined],
    ['WITH w AS (SELECT 1) INSERT INTO t SELECT * FROM w', undefined],
    ['INSERT INTO t VALUES (1)', undefined],
    ['CALL p()', undefined],
    ['DO $$ BEGIN CREATE TABLE x (); END $$', undefined],
  ];
  for (const [sql, tag] of cases) expect([sql, commandTag(one(sql))]).toEqual([sql, tag]);
});

test('knows which statements fire ddl_command_end', () => {
  const fires = (sql: string, version?: number): boolean => firesDdlCommandEnd(one(sql), version);
  expect(fires('CREATE DATABASE x')).toBe(false);
  expect(fires('ALTER ROLE app SET search_path = x')).toBe(false);
  expect(fires('CREATE TABLESPACE fast LOCATION $$/x$$')).toBe(false);
  expect(fires('  grant select on t to u')).toBe(true);
  expect(fires('GRANT app_ro TO alice')).toBe(false);
  expect(fires('GRANT CONNECT ON DATABASE shop TO alice')).toBe(false);
  expect(fires('COMMENT ON DATABASE shop IS $$x$$')).toBe(false);
  expect(fires('COMMENT ON COLUMN t.c IS $$x$$')).toBe(true);
  expect(fires('REINDEX TABLE t', 150000)).toBe(false);
  expect(fires('REINDEX TABLE t', 170000)).toBe(true);
  expect(fires('SELECT 1 INTO t2')).toBe(true);
  expect(fires('UPDATE t SET a = 1')).toBe(false);
});

test('removes a keyword only where it is one', () => {
  expect(withoutKeyword(one('CREATE INDEX CONCURRENTLY "concurrently" ON t (a)'), 'CONCURRENTLY')).toBe('CREATE INDEX "concurrently" ON t (a)');
  expect(withoutKeyword(one(`DROP INDEX /* concurrently */ CONCURRENTLY i`), 'CONCURRENTLY')).toBe('DROP INDEX /* concurrently */ i');
  expect(withoutKeyword(one(`CREATE INDEX i ON t (concurrently)`), 'CONCURRENTLY')).toBe('CREATE INDEX i ON t (concurrently)');
});

test('tokens carry their parenthesis depth', () => {
  const depths = tokenize('a (b (c) d) e')
    .filter((t) => t.kind === 'word')
    .map((t) => `${t.upper}${t.depth}`);
  expect(depths).toEqual(['A0', 'B1', 'C2', 'D1', 'E0']);
});
