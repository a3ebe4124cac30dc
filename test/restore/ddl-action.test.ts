/**
 * What replay does with each kind of archived schema change. The records are shaped as PostgreSQL 15's
 * event triggers produce them (see the capture in src/capture/ddl-capture-sql.ts; the end-to-end tests
 * in test/restore/schema-changes.test.ts archive real ones).
 */
import { locateStatement, parseDdlRecord, type DdlRecord } from '../../src/archive/ddl-record';
import { ddlAction } from '../../src/archive/ddl-action';

function record(fields: Partial<DdlRecord> & { tag: string; query: string }): DdlRecord {
  return parseDdlRecord(
    JSON.stringify({
      format: 2,
      server: 150018,
      settings: { search_path: 'public' },
      commands: [{ tag: fields.tag, type: 'table', schema: 'public', identity: 'public.t' }],
      ...fields,
    }),
  );
}

const statementOf = (r: DdlRecord): string | null => locateStatement(r).statement;
const run = (r: DdlRecord): string => {
  const action = ddlAction(r);
  if (action.kind !== 'run') throw new Error(`expected a statement to run, got ${JSON.stringify(action)}`);
  return action.statement;
};

describe('finding the statement', () => {
  test('a client statement alone is the whole string', () => {
    expect(statementOf(record({ tag: 'CREATE TABLE', query: 'CREATE TABLE t (id int PRIMARY KEY);', index: 0, tagIndex: 0 }))).toBe(
      'CREATE TABLE t (id int PRIMARY KEY)',
    );
  });

  test('in a migration string, by its rank among statements of its tag', () => {
    const query = `CREATE TEMP TABLE stage (x int); INSERT INTO stage VALUES (1); CREATE TABLE t (x int); DO $$ BEGIN EXECUTE 'CREATE TABLE u (y int)'; END $$;
      GRANT app_ro TO alice; CREATE INDEX ON t (x); CREATE TABLE v (z int)`;
    expect(statementOf(record({ tag: 'CREATE TABLE', query, index: 1, tagIndex: 1 }))).toBe('CREATE TABLE t (x int)');
    expect(statementOf(record({ tag: 'CREATE INDEX', query, index: 2, tagIndex: 0 }))).toBe('CREATE INDEX ON t (x)');
    expect(statementOf(record({ tag: 'CREATE TABLE', query, index: 3, tagIndex: 2 }))).toBe('CREATE TABLE v (z int)');
    // a rank that does not match the string is an error, never another statement
    expect(locateStatement(record({ tag: 'CREATE VIEW', query, index: 9, tagIndex: 0 }))).toMatchObject({ origin: 'unknown' });
  });

  test('inside a function, DO block or procedure: the exact statement from PG_CONTEXT', () => {
    const context = 'SQL statement "CREATE TABLE "we""ird" (\n "a""b" text DEFAULT \'x"y\')"\nPL/pgSQL function inline_code_block line 1 at EXECUTE';
    const r = record({ tag: 'CREATE TABLE', query: 'DO $$ ... $$', context });
    expect(locateStatement(r)).toEqual({ origin: 'nested', statement: 'CREATE TABLE "we""ird" (\n "a""b" text DEFAULT \'x"y\')' });
    const deeper = record({
      tag: 'ALTER TABLE',
      query: 'CALL maintain()',
      context:
        'SQL statement "ALTER TABLE p ATTACH PARTITION p_2026 FOR VALUES FROM (\'2026-01-01\') TO (\'2027-01-01\')"\nPL/pgSQL function make_partition(integer) line 4 at EXECUTE\nSQL statement "SELECT make_partition(2026)"\nPL/pgSQL function maintain() line 3 at PERFORM',
    });
    expect(statementOf(deeper)).toBe("ALTER TABLE p ATTACH PARTITION p_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
  });

  test('in a SQL-language function: its statement by number, from the function source', () => {
    const r = record({
      tag: 'ALTER TABLE',
      query: 'CALL mkp()',
      context: 'SQL function "mkp" statement 2',
      functionSource: ' CREATE TABLE d (z int); ALTER TABLE d ADD COLUMN w int ',
    });
    expect(statementOf(r)).toBe('ALTER TABLE d ADD COLUMN w int');
    expect(ddlAction({ ...r, functionSource: null })).toMatchObject({ kind: 'unreplayable', reason: expect.stringContaining('SQL function "mkp"') });
  });

  test('from code without statement text (C): unreplayable, except drops, from what was dropped', () => {
    const unknown = record({ tag: 'CREATE TABLE', query: 'SELECT create_hypertable()', context: 'while doing something in C' });
    expect(ddlAction(unknown)).toMatchObject({ kind: 'unreplayable', reason: expect.stringContaining('not available') });
    const drop = record({
      tag: 'DROP TABLE',
      query: 'SELECT drop_chunks()',
      context: 'while doing something in C',
      commands: [],
      dropped: { temporaryOnly: false, count: 2, originals: [{ type: 'table', schema: 'public', identity: 'public."chunk 1"' }] },
    });
    expect(run(drop)).toBe('DROP TABLE IF EXISTS public."chunk 1" CASCADE');
  });
});

describe('what replay runs', () => {
  test('CONCURRENTLY is dropped: replay applies each transaction in a transaction block', () => {
    expect(run(record({ tag: 'CREATE INDEX', query: 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)', index: 0, tagIndex: 0 }))).toBe(
      'CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)',
    );
    expect(
      run(record({ tag: 'DROP INDEX', query: 'DROP INDEX CONCURRENTLY i', commands: [], dropped: { temporaryOnly: false, count: 1, originals: [] } })),
    ).toBe('DROP INDEX i');
    expect(run(record({ tag: 'ALTER TABLE', query: 'ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY', index: 0, tagIndex: 0 }))).toBe(
      'ALTER TABLE p DETACH PARTITION p1',
    );
    expect(run(record({ tag: 'ALTER TABLE', query: 'ALTER TABLE p DETACH PARTITION p1 FINALIZE', index: 0, tagIndex: 0 }))).toBe(
      'ALTER TABLE p DETACH PARTITION p1',
    );
  });

  test('CREATE TABLE AS and SELECT INTO create the table without rows: its rows are in the stream', () => {
    const ctas = record({ tag: 'CREATE TABLE AS', query: 'CREATE TABLE c AS SELECT * FROM tmp', definition: 'CREATE TABLE public.c (id integer, v text)' });
    expect(run(ctas)).toBe('CREATE TABLE public.c (id integer, v text)');
    // an archive made before definitions were recorded
    const old = parseDdlRecord(
      JSON.stringify({ query: 'CREATE TABLE c AS SELECT 1 AS x WITH DATA', index: 0, tag: 'CREATE TABLE AS', search_path: 'public', commands: [] }),
    );
    expect(run(old)).toBe('CREATE TABLE c AS SELECT 1 AS x WITH NO DATA');
  });

  test('temporary objects, no-op commands, pitr’s own objects and index rebuilds are skipped', () => {
    expect(
      ddlAction(
        record({
          tag: 'CREATE TABLE',
          query: 'CREATE TEMP TABLE s (x int)',
          commands: [{ tag: 'CREATE TABLE', type: 'table', schema: 'pg_temp', identity: 'pg_temp.s' }],
        }),
      ),
    ).toMatchObject({
      kind: 'skip',
    });
    expect(
      ddlAction(record({ tag: 'DROP TABLE', query: 'DROP TABLE s', commands: [], dropped: { temporaryOnly: true, count: 3, originals: [] } })),
    ).toMatchObject({ kind: 'skip' });
    expect(ddlAction(record({ tag: 'CREATE TABLE', query: 'CREATE TABLE IF NOT EXISTS t (x int)', commands: [] }))).toMatchObject({
      kind: 'skip',
      reason: expect.stringContaining('changed nothing'),
    });
    expect(
      ddlAction(
        record({
          tag: 'CREATE FUNCTION',
          query: 'CREATE FUNCTION pitr.f()',
          commands: [{ tag: 'CREATE FUNCTION', type: 'function', schema: 'pitr', identity: 'pitr.f()' }],
        }),
      ),
    ).toMatchObject({
      kind: 'skip',
    });
    expect(ddlAction(record({ tag: 'REINDEX', query: 'REINDEX TABLE CONCURRENTLY t', server: 170000 }))).toMatchObject({ kind: 'skip' });
    expect(ddlAction(parseDdlRecord(JSON.stringify({ format: 2, event: 'extension-script', tag: 'CREATE EXTENSION' })))).toEqual({ kind: 'extension-script' });
  });

  test('a GRANT reports no identity but is run', () => {
    expect(
      run(
        record({
          tag: 'GRANT',
          query: 'GRANT SELECT ON t TO app_ro',
          index: 0,
          tagIndex: 0,
          commands: [{ tag: 'GRANT', type: 'TABLE', schema: null, identity: null }],
        }),
      ),
    ).toBe('GRANT SELECT ON t TO app_ro');
  });

  test('the settings it ran under travel with it', () => {
    const action = ddlAction(
      record({
        tag: 'CREATE FUNCTION',
        query: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
        settings: { search_path: 'app', check_function_bodies: 'off', DateStyle: 'SQL, DMY' },
      }),
    );
    expect(action).toMatchObject({ kind: 'run', settings: { search_path: 'app', check_function_bodies: 'off', DateStyle: 'SQL, DMY' } });
  });

  test('archives of format 1 still replay as they did', () => {
    const old = parseDdlRecord(
      JSON.stringify({
        query: 'update t set x = 1; alter table t add column note text; create index on t (x)',
        index: 1,
        tag: 'CREATE INDEX',
        search_path: 'public',
        role: 'app',
        commands: [],
      }),
    );
    expect(old.format).toBe(1);
    expect(run(old)).toBe('create index on t (x)');
    expect(ddlAction(old)).toMatchObject({ settings: { search_path: 'public' } });
  });
});
