/**
 * The scenarios of PostgreSQL's own logical replication tests (src/test/subscription/t/: rep_changes,
 * types, constraints, rewrite, truncate, generated, collation, partition, the stream and subtransaction
 * workloads, DDL between changes, messages, schema changes, replica identity FULL with duplicates and
 * NULLs, sequences, and the collected bugs), each run on one archived source in a schema of its own.
 * Where PostgreSQL checks a subscriber, the reference here is the source: a restore to every marked
 * point must equal the source then, in rows and in schema. Some cases (marked) are made sharper
 * than PostgreSQL's: values that are equal by = but print differently, a CHECK calling a function on a
 * table created later, triggers enabled ALWAYS and REPLICA.
 */
import { Client } from 'pg';
import { ArchiveFixture } from '../harness/archive-fixture';
import { runPitr, type PitrProcess } from '../harness/pitr-process';
import { PointRecorder, restoreDifference, type RecordedPoint } from '../harness/recorded-points';

/** One statement string (several statements allowed), on session a (default) or b; `point` records the state after it. */
interface Step {
  sql: string;
  session?: 'a' | 'b';
  point?: string;
  /** The source must refuse it (and nothing of it is archived). */
  fails?: RegExp;
}

interface Scenario {
  name: string;
  steps: Step[];
  /** Runs only when this query returns a row (e.g. an ICU build). */
  requires?: string;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'S01 rep_changes: a keyless table preloaded by CREATE TABLE AS, key-rewriting updates',
    steps: [
      { sql: 'CREATE TABLE tab_ins AS SELECT generate_series(1, 1002) AS a', point: 'CTAS preload' },
      { sql: 'CREATE TABLE tab_rep (a int PRIMARY KEY)' },
      { sql: 'INSERT INTO tab_ins SELECT generate_series(1, 50); DELETE FROM tab_ins WHERE a > 20; UPDATE tab_ins SET a = -a', point: 'keyless rewrite' },
      { sql: 'INSERT INTO tab_rep SELECT generate_series(1, 50); DELETE FROM tab_rep WHERE a > 20; UPDATE tab_rep SET a = -a' },
      { sql: 'DELETE FROM tab_rep', point: 'emptied' },
    ],
  },
  {
    name: 'S02 rep_changes: REPLICA IDENTITY FULL with duplicate rows, each update changes exactly one',
    steps: [
      {
        sql: 'CREATE TABLE tab_full AS SELECT generate_series(1, 10) AS a; INSERT INTO tab_full SELECT generate_series(1, 10); ALTER TABLE tab_full REPLICA IDENTITY FULL',
      },
      { sql: 'UPDATE tab_full SET a = a * a', point: 'squared duplicates' },
      { sql: "CREATE TABLE tab_full2 (x text); ALTER TABLE tab_full2 REPLICA IDENTITY FULL; INSERT INTO tab_full2 VALUES ('a'), ('b'), ('b')" },
      { sql: "UPDATE tab_full2 SET x = 'bb' WHERE x = 'b'", point: 'duplicates updated' },
    ],
  },
  {
    name: 'S03 rep_changes: replica identity FULL with a key, NOTHING, a key with INCLUDE, an index that is not the identity, no columns',
    steps: [
      {
        sql: `CREATE TABLE tab_full_pk (a int PRIMARY KEY, b text); ALTER TABLE tab_full_pk REPLICA IDENTITY FULL;
              CREATE TABLE tab_nothing (a int); ALTER TABLE tab_nothing REPLICA IDENTITY NOTHING;
              CREATE TABLE tab_include (a int, b text, CONSTRAINT covering PRIMARY KEY (a) INCLUDE (b));
              CREATE TABLE tab_no_col (); INSERT INTO tab_no_col DEFAULT VALUES`,
      },
      {
        sql: `INSERT INTO tab_full_pk VALUES (1, 'foo'), (2, 'baz'); INSERT INTO tab_nothing SELECT generate_series(1, 20);
              INSERT INTO tab_include SELECT generate_series(1, 50); DELETE FROM tab_include WHERE a > 20; UPDATE tab_include SET a = -a;
              INSERT INTO tab_no_col DEFAULT VALUES`,
      },
      { sql: "UPDATE tab_full_pk SET b = 'bar' WHERE a = 1; UPDATE tab_full_pk SET b = 'quux' WHERE a = 1; DELETE FROM tab_full_pk WHERE a = 2" },
      { sql: 'UPDATE tab_nothing SET a = 0', fails: /does not have a replica identity/, point: 'identities' },
    ],
  },
  {
    name: 'S04 rep_changes: a large TOASTed value, an update leaving it unchanged, then DROP COLUMN (also with FULL)',
    steps: [
      {
        sql: `CREATE TABLE tab_mixed (a int PRIMARY KEY, b text, c numeric); ALTER TABLE tab_mixed ALTER COLUMN b SET STORAGE EXTERNAL;
              CREATE TABLE tab_mixed_full (a int PRIMARY KEY, b text, c numeric); ALTER TABLE tab_mixed_full ALTER COLUMN b SET STORAGE EXTERNAL;
              ALTER TABLE tab_mixed_full REPLICA IDENTITY FULL`,
      },
      {
        sql: `INSERT INTO tab_mixed VALUES (1, 'foo', 1.1), (2, 'bar', 2.2); UPDATE tab_mixed SET b = repeat('xyzzy', 100000) WHERE a = 2;
              INSERT INTO tab_mixed_full SELECT * FROM tab_mixed`,
      },
      { sql: 'UPDATE tab_mixed SET c = 3.3 WHERE a = 2; UPDATE tab_mixed_full SET c = 3.3 WHERE a = 2', point: 'TOAST unchanged' },
      { sql: 'ALTER TABLE tab_mixed DROP COLUMN b; ALTER TABLE tab_mixed_full DROP COLUMN b', point: 'column dropped' },
      { sql: 'UPDATE tab_mixed SET c = 11.11 WHERE a = 1; UPDATE tab_mixed_full SET c = 22.22 WHERE a = 2', point: 'after the drop' },
    ],
  },
  {
    name: 'S05 types: arrays, enums, composites, ranges and hstore as keys and values',
    steps: [
      {
        sql: `CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;
              CREATE TYPE tst_enum_t AS ENUM ('a', 'b', 'c', 'd', 'e');
              CREATE TYPE tst_comp_basic_t AS (a float8, b text, c int);
              CREATE TYPE tst_comp_mix_t AS (a tst_comp_basic_t, b tst_comp_basic_t[], c tst_enum_t, d tst_enum_t[]);
              CREATE TABLE tst_one_array (a int PRIMARY KEY, b int[]);
              CREATE TABLE tst_arrays (a int[] PRIMARY KEY, b text[], c float8[], d interval[]);
              CREATE TABLE tst_enums (a tst_enum_t PRIMARY KEY, b tst_enum_t[]);
              CREATE TABLE tst_comps (a tst_comp_basic_t PRIMARY KEY, b tst_comp_basic_t[]);
              CREATE TABLE tst_comp_mix_array (a tst_comp_mix_t PRIMARY KEY, b tst_comp_mix_t[]);
              CREATE TABLE tst_range (a int PRIMARY KEY, b int4range);
              CREATE TABLE tst_range_array (a int PRIMARY KEY, b tstzrange, c int8range[]);
              CREATE TABLE tst_hstore (a int PRIMARY KEY, b public.hstore)`,
      },
      {
        sql: `INSERT INTO tst_one_array VALUES (1, '{1,2,3}'), (2, '{2,3,1}'), (3, '{3,2,1}'), (4, '{4,3,2}'), (5, '{5,NULL,3}');
              INSERT INTO tst_arrays VALUES ('{1,2,3}', '{a,b,c}', '{1.1,2.2,3.3}', '{"1 day","2 days","3 days"}'),
                ('{2,3,1}', '{b,c,a}', '{2.2,3.3,1.1}', '{"2 minutes","3 minutes","1 minute"}'),
                ('{3,1,2}', '{c,a,b}', '{3.3,1.1,2.2}', '{"3 years","1 year","2 years"}'),
                ('{4,1,2}', '{d,a,b}', '{4.4,1.1,2.2}', '{"4 years","1 year","2 years"}'),
                ('{5,NULL,NULL}', '{e,NULL,b}', '{5.5,1.1,NULL}', '{"5 years",NULL,NULL}');
              INSERT INTO tst_enums VALUES ('a', '{b,c}'), ('b', '{c,a}'), ('c', '{b,a}'), ('d', '{c,b}'), ('e', '{d,NULL}');
              INSERT INTO tst_comps VALUES (ROW(1.0, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_basic_t]), (ROW(2.0, 'b', 2), ARRAY[ROW(2, 'b', 2)::tst_comp_basic_t]),
                (ROW(3.0, 'c', 3), ARRAY[ROW(3, 'c', 3)::tst_comp_basic_t]), (ROW(4.0, 'd', 4), ARRAY[ROW(4, 'd', 3)::tst_comp_basic_t]),
                (ROW(5.0, 'e', NULL), ARRAY[NULL, ROW(5, NULL, 5)::tst_comp_basic_t]);
              INSERT INTO tst_comp_mix_array VALUES
                (ROW(ROW(1, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_basic_t, NULL], 'a', '{a,b,NULL,c}'),
                 ARRAY[ROW(ROW(1, 'a', 1), ARRAY[ROW(1, 'a', 1)::tst_comp_basic_t, NULL], 'a', '{a,b,NULL,c}')::tst_comp_mix_t]);
              INSERT INTO tst_range VALUES (1, '[1,10]'), (2, '[2,20]'), (3, '[3,30]'), (4, '[4,40]'), (5, '[5,50]');
              INSERT INTO tst_range_array VALUES (1, tstzrange('Mon Aug 04 00:00:00 2014 CEST'::timestamptz, 'infinity'), '{"[1,2]","[10,20]"}'),
                (2, tstzrange('Sat Aug 02 00:00:00 2014 CEST'::timestamptz, 'Mon Aug 04 00:00:00 2014 CEST'::timestamptz), '{"[2,3]","[20,30]"}'),
                (3, tstzrange('Fri Aug 01 00:00:00 2014 CEST'::timestamptz, 'Mon Aug 04 00:00:00 2014 CEST'::timestamptz), '{"[3,4]"}');
              INSERT INTO tst_hstore VALUES (1, '"a"=>"1"'), (2, '"zzz"=>"foo"'), (3, '"123"=>"321"'), (4, '"yellow horse"=>"moaned"')`,
        point: 'inserted',
      },
      {
        sql: `UPDATE tst_one_array SET b = '{4,5,6}' WHERE a = 1; UPDATE tst_one_array SET b = '{4,5,6,1}' WHERE a > 3;
              UPDATE tst_arrays SET b = '{"1a","2a","3a"}', c = '{1.0,2.0,3.0}', d = '{"1 day 1 second","2 days 2 seconds","3 days 3 second"}' WHERE a = '{1,2,3}';
              UPDATE tst_enums SET b = '{e,NULL}' WHERE a = 'a'; UPDATE tst_enums SET b = '{e,d}' WHERE a > 'c';
              UPDATE tst_comps SET b = ARRAY[ROW(9, 'x', -1)::tst_comp_basic_t] WHERE (a).a = 1.0;
              UPDATE tst_comps SET b = ARRAY[NULL, ROW(9, 'x', NULL)::tst_comp_basic_t] WHERE (a).a > 3.9;
              UPDATE tst_comp_mix_array SET b[2] = NULL WHERE ((a).a).a = 1;
              UPDATE tst_range SET b = '[100,1000]' WHERE a = 1; UPDATE tst_range SET b = '(1,90)' WHERE a > 3;
              UPDATE tst_range_array SET c = '{"[100,1000]"}' WHERE a = 1;
              UPDATE tst_hstore SET b = '"updated"=>"value"' WHERE a < 3; UPDATE tst_hstore SET b = '"also"=>"updated"' WHERE a = 3`,
        point: 'updated',
      },
      {
        sql: `DELETE FROM tst_one_array WHERE a = 1; DELETE FROM tst_one_array WHERE b = '{2,3,1}';
              DELETE FROM tst_arrays WHERE a = '{1,2,3}'; DELETE FROM tst_arrays WHERE a[1] = 2;
              DELETE FROM tst_enums WHERE a = 'a'; DELETE FROM tst_enums WHERE b[1] = 'b';
              DELETE FROM tst_comps WHERE (a).b = 'a'; DELETE FROM tst_comps WHERE ROW(3, 'c', 3)::tst_comp_basic_t = ANY(b);
              DELETE FROM tst_comp_mix_array WHERE ((a).a).a = 1;
              DELETE FROM tst_range WHERE a = 1; DELETE FROM tst_range WHERE '[10,20]' && b;
              DELETE FROM tst_range_array WHERE a = 1; DELETE FROM tst_hstore WHERE a = 1`,
        point: 'deleted',
      },
    ],
  },
  {
    name: 'S06 types: a domain whose CHECK calls a SQL function reading a table created after it (check_function_bodies = off)',
    steps: [
      {
        // as in PostgreSQL's test, the function names its table with its schema: a function a constraint
        // calls resolves unqualified names through the search_path of the session applying the row
        sql: `SET check_function_bodies = off;
              CREATE FUNCTION public.monot_incr(int) RETURNS bool LANGUAGE sql AS 'select $1 > coalesce(max(a), 0) from public.tst_dom_constr';
              RESET check_function_bodies;
              CREATE DOMAIN public.monot_int AS int CHECK (public.monot_incr(VALUE));
              CREATE TABLE public.tst_dom_constr (a public.monot_int)`,
      },
      { sql: 'INSERT INTO public.tst_dom_constr VALUES (10)' },
      { sql: 'INSERT INTO public.tst_dom_constr VALUES (11)', point: 'domain checked' },
    ],
  },
  {
    name: 'S07 constraints: a foreign key dropped by DROP TABLE CASCADE, a key change with an unchanged TOASTed value',
    steps: [
      { sql: 'CREATE TABLE tab_fk (bid int PRIMARY KEY); CREATE TABLE tab_fk_ref (id int PRIMARY KEY, junk text, bid int REFERENCES tab_fk (bid))' },
      { sql: 'INSERT INTO tab_fk VALUES (1); INSERT INTO tab_fk_ref (id, bid, junk) VALUES (1, 1, repeat(pi()::text, 20000))' },
      { sql: 'DROP TABLE tab_fk CASCADE' },
      {
        sql: 'INSERT INTO tab_fk_ref (id, bid) VALUES (2, 2); UPDATE tab_fk_ref SET bid = 2 WHERE bid = 1; UPDATE tab_fk_ref SET id = 6 WHERE id = 1',
        point: 'orphans',
      },
    ],
  },
  {
    name: 'S08 constraints (sharper): triggers enabled ALWAYS and REPLICA on the source do not fire again or for the first time in replay',
    steps: [
      {
        sql: `CREATE TABLE audit (tg text, op text, id int);
              CREATE TABLE t_trig (id int PRIMARY KEY, bid int);
              CREATE FUNCTION t_trig_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (TG_NAME, TG_OP, NEW.id); RETURN NEW; END $$;
              CREATE FUNCTION t_trig_filter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'INSERT' AND NEW.id >= 10 THEN RETURN NULL; END IF; IF TG_OP = 'UPDATE' THEN RETURN NULL; END IF; RETURN NEW; END $$;
              CREATE TRIGGER trg_origin AFTER INSERT OR UPDATE ON t_trig FOR EACH ROW EXECUTE FUNCTION t_trig_audit();
              CREATE TRIGGER trg_always AFTER INSERT OR UPDATE ON t_trig FOR EACH ROW EXECUTE FUNCTION t_trig_audit();
              ALTER TABLE t_trig ENABLE ALWAYS TRIGGER trg_always;
              CREATE TRIGGER trg_replica BEFORE INSERT OR UPDATE OF bid ON t_trig FOR EACH ROW EXECUTE FUNCTION t_trig_filter();
              ALTER TABLE t_trig ENABLE REPLICA TRIGGER trg_replica`,
      },
      { sql: 'INSERT INTO t_trig VALUES (1, 1), (10, 10); UPDATE t_trig SET bid = 2 WHERE id = 1; UPDATE t_trig SET id = 6 WHERE id = 1', point: 'triggers' },
    ],
  },
  {
    name: 'S10 rewrite: a fast default, a rewriting type change, and a default of now() evaluated on the source',
    steps: [
      { sql: "CREATE TABLE test1 (a int, b text); INSERT INTO test1 VALUES (1, 'one'), (2, 'two')" },
      { sql: "ALTER TABLE test1 ADD c int NOT NULL DEFAULT 0; INSERT INTO test1 (a, b, c) VALUES (3, 'three', 33)", point: 'fast default' },
      { sql: "ALTER TABLE test1 ALTER COLUMN a TYPE bigint; INSERT INTO test1 VALUES (4, 'four', 44)", point: 'rewritten' },
      { sql: "ALTER TABLE test1 ADD COLUMN t timestamptz DEFAULT now(); INSERT INTO test1 (a, b, c) VALUES (5, 'five', 55)", point: 'now() default' },
    ],
  },
  {
    name: 'S11 identity columns: GENERATED ALWAYS and BY DEFAULT, TRUNCATE RESTART IDENTITY, ALTER ... RESTART',
    steps: [
      {
        sql: 'CREATE TABLE t_id (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text); CREATE TABLE t_id2 (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100) PRIMARY KEY, v text)',
      },
      {
        sql: "INSERT INTO t_id (v) VALUES ('a'), ('b'), ('c'); INSERT INTO t_id2 (v) VALUES ('x'); INSERT INTO t_id2 VALUES (5, 'explicit'); DELETE FROM t_id WHERE id = 2",
        point: 'identities',
      },
      { sql: "TRUNCATE t_id RESTART IDENTITY; INSERT INTO t_id (v) VALUES ('d')" },
      { sql: "ALTER TABLE t_id ALTER COLUMN id RESTART WITH 50; INSERT INTO t_id (v) VALUES ('e')", point: 'restarted' },
    ],
  },
  {
    name: 'S13 truncate: a sequence reset, a foreign key pair, CASCADE, TRUNCATE then INSERT in one transaction, a rolled back TRUNCATE',
    steps: [
      {
        sql: `CREATE TABLE tab1 (a int PRIMARY KEY); CREATE SEQUENCE seq1 OWNED BY tab1.a; ALTER SEQUENCE seq1 START 101;
              CREATE TABLE tab3 (a int PRIMARY KEY); CREATE TABLE tab4 (x int PRIMARY KEY, y int REFERENCES tab3); CREATE TABLE tab5 (a int)`,
      },
      { sql: 'INSERT INTO tab1 VALUES (1), (2), (3); TRUNCATE tab1' },
      { sql: 'TRUNCATE tab1 RESTART IDENTITY', point: 'restart identity' },
      { sql: 'INSERT INTO tab3 VALUES (1), (2), (3); INSERT INTO tab4 VALUES (11, 1), (111, 1), (22, 2); TRUNCATE tab3, tab4' },
      { sql: 'INSERT INTO tab3 VALUES (1), (2); INSERT INTO tab4 VALUES (11, 1); TRUNCATE tab3 CASCADE', point: 'cascade' },
      { sql: 'INSERT INTO tab5 VALUES (1), (2), (3); BEGIN; TRUNCATE tab5; INSERT INTO tab5 VALUES (4); COMMIT' },
      { sql: 'BEGIN; TRUNCATE tab5; ROLLBACK', point: 'truncate rolled back' },
    ],
  },
  {
    name: 'S14 generated: a stored generated column, a key update, one added by ALTER, DROP EXPRESSION',
    steps: [
      {
        sql: 'CREATE TABLE gen1 (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 2) STORED); INSERT INTO gen1 (a) VALUES (1), (2), (3), (4), (5); UPDATE gen1 SET a = 6 WHERE a = 5',
        point: 'generated',
      },
      { sql: 'ALTER TABLE gen1 ADD COLUMN c int GENERATED ALWAYS AS (a + 100) STORED; ALTER TABLE gen1 ALTER COLUMN b DROP EXPRESSION' },
      { sql: 'UPDATE gen1 SET b = 0 WHERE a = 1; INSERT INTO gen1 (a, b) VALUES (7, 70)', point: 'expression dropped' },
    ],
  },
  {
    name: 'S15 collation: a nondeterministic collation on a key and on a FULL identity table with canonically equal rows',
    requires: "SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1",
    steps: [
      {
        sql: `CREATE COLLATION ctest_nondet (provider = icu, locale = 'und', deterministic = false);
              CREATE TABLE coll1 (a text COLLATE ctest_nondet PRIMARY KEY, b text);
              CREATE TABLE coll2 (a text COLLATE ctest_nondet, b text); ALTER TABLE coll2 REPLICA IDENTITY FULL;
              INSERT INTO coll1 VALUES (U&'\\00E4bc', 'foo');
              INSERT INTO coll2 VALUES (U&'\\00E4bc', 'foo'), (U&'\\0061\\0308bc', 'foo')`,
      },
      {
        sql: "UPDATE coll1 SET b = 'bar' WHERE b = 'foo'; UPDATE coll2 SET b = 'bar' WHERE convert_to(a, 'UTF8') = '\\x61cc886263'::bytea",
        point: 'one of two equal rows',
      },
    ],
  },
  {
    name: 'S16 partition: a leaf with its columns in another order, a default partition, moves within and across partitions, TRUNCATE of a leaf',
    steps: [
      {
        sql: `CREATE TABLE p1 (a int PRIMARY KEY, b text) PARTITION BY LIST (a);
              CREATE TABLE p1_1 (b text, a int NOT NULL); ALTER TABLE p1 ATTACH PARTITION p1_1 FOR VALUES IN (1, 2, 3);
              CREATE TABLE p1_2 PARTITION OF p1 FOR VALUES IN (4, 5, 6); CREATE TABLE p1_def PARTITION OF p1 DEFAULT`,
      },
      { sql: 'INSERT INTO p1 VALUES (1); INSERT INTO p1_1 (a) VALUES (3); INSERT INTO p1_2 VALUES (5); INSERT INTO p1 VALUES (0)' },
      {
        sql: 'UPDATE p1 SET a = 2 WHERE a = 1; UPDATE p1 SET a = 6 WHERE a = 5; UPDATE p1 SET a = 4 WHERE a = 6; UPDATE p1 SET a = 6 WHERE a = 4',
        point: 'moved within',
      },
      { sql: 'UPDATE p1 SET a = 1 WHERE a = 0; UPDATE p1 SET a = 4 WHERE a = 1', point: 'moved across' },
      {
        sql: "DELETE FROM p1 WHERE a IN (2, 3, 5); DELETE FROM p1_2; INSERT INTO p1 VALUES (1, 'foo'), (4, 'bar'), (10, 'baz'); UPDATE p1 SET b = 'quux' WHERE a = 4",
      },
      { sql: 'TRUNCATE p1_2', point: 'leaf truncated' },
      { sql: 'TRUNCATE p1', point: 'root truncated' },
    ],
  },
  {
    name: 'S17 partition: several levels, a leaf truncated with another table',
    steps: [
      {
        sql: `CREATE TABLE p2 (a int PRIMARY KEY, b text) PARTITION BY LIST (a);
              CREATE TABLE p2_1 (b text, a int NOT NULL); ALTER TABLE p2 ATTACH PARTITION p2_1 FOR VALUES IN (0, 1, 2, 3);
              CREATE TABLE p2_2 PARTITION OF p2 FOR VALUES IN (5, 6);
              CREATE TABLE p4 (a int PRIMARY KEY) PARTITION BY LIST (a);
              CREATE TABLE p4_1 PARTITION OF p4 FOR VALUES IN (-1, 0, 1) PARTITION BY LIST (a);
              CREATE TABLE p4_1_1 PARTITION OF p4_1 FOR VALUES IN (-1, 0, 1)`,
      },
      {
        sql: 'INSERT INTO p2 VALUES (1), (0), (3), (5); INSERT INTO p4 VALUES (-1), (0), (1); UPDATE p2 SET a = 6 WHERE a = 5; UPDATE p2 SET a = 2 WHERE a = 6',
      },
      { sql: 'DELETE FROM p2; INSERT INTO p2 VALUES (1), (2), (5); TRUNCATE p2_1, p4_1_1', point: 'leaves truncated' },
    ],
  },
  {
    name: 'S18 partition: columns of a partitioned table dropped and added in one ALTER, REPLICA IDENTITY USING INDEX with column churn',
    steps: [
      {
        sql: 'CREATE TABLE p5 (a int PRIMARY KEY, b text) PARTITION BY LIST (a); CREATE TABLE p5_1 (b text, a int NOT NULL); ALTER TABLE p5 ATTACH PARTITION p5_1 FOR VALUES IN (1, 3, 5, 6)',
      },
      {
        sql: "ALTER TABLE p5 DROP b, ADD COLUMN c text DEFAULT 'pub_tab2', ADD b text; INSERT INTO p5 (a, b) VALUES (1, 'xxx'), (3, 'yyy'), (5, 'zzz'); INSERT INTO p5 (a, b, c) VALUES (6, 'aaa', 'xxx_c')",
      },
      { sql: "UPDATE p5 SET b = 'quux' WHERE a = 5; DELETE FROM p5 WHERE a = 1", point: 'columns churned' },
      {
        sql: `CREATE TABLE tab5 (a int NOT NULL, b int); CREATE UNIQUE INDEX tab5_a_idx ON tab5 (a); ALTER TABLE tab5 REPLICA IDENTITY USING INDEX tab5_a_idx;
              INSERT INTO tab5 VALUES (1, 1); UPDATE tab5 SET a = 2 WHERE a = 1; UPDATE tab5 SET a = 3 WHERE a = 2`,
      },
      {
        sql: 'ALTER TABLE tab5 DROP COLUMN b, ADD COLUMN c int; ALTER TABLE tab5 ADD COLUMN b int; UPDATE tab5 SET c = 1 WHERE a = 3; UPDATE tab5 SET a = 4 WHERE a = 3',
        point: 'identity index churn',
      },
    ],
  },
  {
    name: 'S19 partition: ATTACH of a populated table, a move into another partition, DETACH, the detached table lives on',
    steps: [
      {
        sql: `CREATE TABLE pt (a int PRIMARY KEY, b text) PARTITION BY RANGE (a); CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (10);
              CREATE TABLE pt_def PARTITION OF pt DEFAULT; INSERT INTO pt VALUES (1, 'a'), (15, 'def');
              CREATE TABLE pt_2 (b text, a int NOT NULL); INSERT INTO pt_2 VALUES ('pre', 12)`,
      },
      { sql: 'ALTER TABLE pt ATTACH PARTITION pt_2 FOR VALUES FROM (10) TO (14)', point: 'attached' },
      { sql: 'UPDATE pt SET a = 13 WHERE a = 12; UPDATE pt SET a = 2 WHERE a = 13' },
      { sql: "ALTER TABLE pt DETACH PARTITION pt_1; INSERT INTO pt_1 VALUES (3, 'after-detach'); UPDATE pt_1 SET b = 'z' WHERE a = 1", point: 'detached' },
    ],
  },
  {
    name: 'S20 binary (data part): numeric scale, -0, NaN, infinities, integers beyond 2^53, a 40-digit numeric',
    steps: [
      { sql: 'CREATE TABLE test_numerical (a int PRIMARY KEY, b numeric, c float8, d bigint)' },
      {
        sql: `INSERT INTO test_numerical VALUES (10, 1.0, '-0', 9007199254740993), (11, 1.00, 'NaN', -9223372036854775808),
              (12, 'NaN', 'Infinity', 9223372036854775807), (13, 'Infinity', '-Infinity', 0), (14, 12345678901234567890.12345678901234567890, 0.1, 1)`,
      },
      { sql: 'UPDATE test_numerical SET c = c * 1 WHERE a = 14', point: 'edge values' },
    ],
  },
  {
    name: 'S21 stream: two interleaved large transactions, the later one committing first',
    steps: [
      { sql: "CREATE TABLE stream_tab (a int PRIMARY KEY, b varchar); INSERT INTO stream_tab VALUES (1, 'foo'), (2, 'bar')" },
      {
        sql: 'BEGIN; INSERT INTO stream_tab SELECT i, md5(i::text) FROM generate_series(3, 5000) s(i); UPDATE stream_tab SET b = md5(b) WHERE mod(a, 2) = 0; DELETE FROM stream_tab WHERE mod(a, 3) = 0',
      },
      {
        session: 'b',
        sql: 'BEGIN; INSERT INTO stream_tab SELECT i, md5(i::text) FROM generate_series(5001, 9999) s(i); DELETE FROM stream_tab WHERE a > 5000; COMMIT',
        point: 'later one committed',
      },
      { sql: 'COMMIT', point: 'earlier one committed' },
      {
        sql: 'BEGIN; INSERT INTO stream_tab SELECT i, md5(i::text) FROM generate_series(5001, 10000) s(i); UPDATE stream_tab SET b = md5(b) WHERE mod(a, 2) = 0; DELETE FROM stream_tab WHERE mod(a, 3) = 0; COMMIT',
      },
    ],
  },
  {
    name: 'S22-S25 subtransactions: nested savepoints, rollbacks to them, DDL in rolled back savepoints',
    steps: [
      { sql: "CREATE TABLE sub_tab (a int PRIMARY KEY, b varchar); INSERT INTO sub_tab VALUES (1, 'foo'), (2, 'bar'); CREATE TABLE sub_tab_2 (a int)" },
      {
        sql: `BEGIN;
              INSERT INTO sub_tab SELECT i, md5(i::text) FROM generate_series(3, 5) s(i); UPDATE sub_tab SET b = md5(b) WHERE mod(a, 2) = 0; DELETE FROM sub_tab WHERE mod(a, 3) = 0;
              SAVEPOINT s1; INSERT INTO sub_tab SELECT i, md5(i::text) FROM generate_series(6, 8) s(i); UPDATE sub_tab SET b = md5(b) WHERE mod(a, 2) = 0; DELETE FROM sub_tab WHERE mod(a, 3) = 0;
              SAVEPOINT s2; INSERT INTO sub_tab SELECT i, md5(i::text) FROM generate_series(9, 11) s(i); UPDATE sub_tab SET b = md5(b) WHERE mod(a, 2) = 0; DELETE FROM sub_tab WHERE mod(a, 3) = 0;
              COMMIT`,
        point: 'savepoints committed',
      },
      {
        sql: `BEGIN; INSERT INTO sub_tab VALUES (20, 'x'); SAVEPOINT s1; INSERT INTO sub_tab VALUES (21, 'x'); SAVEPOINT s2; INSERT INTO sub_tab VALUES (22, 'x');
              ROLLBACK TO s1; INSERT INTO sub_tab VALUES (23, 'x'); SAVEPOINT s3; INSERT INTO sub_tab VALUES (24, 'x'); RELEASE s3; COMMIT;
              BEGIN; INSERT INTO sub_tab_2 VALUES (1); SAVEPOINT sp; INSERT INTO sub_tab_2 VALUES (1); ROLLBACK TO sp; COMMIT;
              BEGIN; INSERT INTO sub_tab VALUES (30, 'x'); ROLLBACK`,
        point: 'rolled back',
      },
      {
        sql: `BEGIN;
              INSERT INTO sub_tab SELECT i, md5(i::text) FROM generate_series(100, 150) s(i);
              ALTER TABLE sub_tab ADD COLUMN c int; SAVEPOINT s1;
              INSERT INTO sub_tab SELECT i, md5(i::text), -i FROM generate_series(151, 200) s(i);
              ALTER TABLE sub_tab ADD COLUMN d int; SAVEPOINT s2;
              INSERT INTO sub_tab SELECT i, md5(i::text), -i, 2 * i FROM generate_series(201, 250) s(i);
              ALTER TABLE sub_tab DROP COLUMN c;
              ROLLBACK TO s1;
              INSERT INTO sub_tab SELECT i, md5(i::text), i FROM generate_series(151, 200) s(i);
              COMMIT`,
        point: 'DDL in rolled back savepoints',
      },
    ],
  },
  {
    name: 'S23 DDL between the inserts of one transaction, before and after savepoints, after all its DML',
    steps: [
      { sql: "CREATE TABLE ddl_tab (a int PRIMARY KEY, b varchar); INSERT INTO ddl_tab VALUES (1, 'foo'), (2, 'bar')" },
      {
        sql: 'BEGIN; INSERT INTO ddl_tab VALUES (3, md5(3::text)); ALTER TABLE ddl_tab ADD COLUMN c int; SAVEPOINT s1; INSERT INTO ddl_tab VALUES (4, md5(4::text), -4); COMMIT',
      },
      {
        sql: 'BEGIN; INSERT INTO ddl_tab SELECT i, md5(i::text), -i FROM generate_series(5, 1000) s(i); ALTER TABLE ddl_tab ADD COLUMN d int; SAVEPOINT s1; INSERT INTO ddl_tab SELECT i, md5(i::text), -i, 2 * i FROM generate_series(1001, 2000) s(i); COMMIT',
        point: 'columns between inserts',
      },
      {
        sql: "BEGIN; INSERT INTO ddl_tab SELECT i, md5(i::text), -i, 2 * i FROM generate_series(2001, 3000) s(i); ALTER TABLE ddl_tab ADD COLUMN f int; COMMIT; INSERT INTO ddl_tab VALUES (3001, 'x', 1, 2, 3)",
        point: 'DDL after the DML',
      },
    ],
  },
  {
    name: 'S26 messages: transactional and not, in rolled back transactions, under other prefixes',
    steps: [
      { sql: 'CREATE TABLE msg_tab (a int PRIMARY KEY)' },
      {
        sql: "SELECT pg_logical_emit_message(true, 'pgoutput', 'a transactional message'); INSERT INTO msg_tab VALUES (1); SELECT pg_logical_emit_message(false, 'pgoutput', 'not transactional'); INSERT INTO msg_tab VALUES (2)",
      },
      {
        sql: "BEGIN; SELECT pg_logical_emit_message(false, 'pgoutput', 'in aborted 1'); INSERT INTO msg_tab VALUES (3); SELECT pg_logical_emit_message(true, 'pgoutput', 'tx in aborted'); ROLLBACK",
      },
      { sql: 'BEGIN; CREATE TABLE t_rolled_back (x int); ROLLBACK', point: 'messages' },
    ],
  },
  {
    name: 'S27 schemas: a partition tree across schemas, CREATE TABLE AS mid-stream, ALTER TABLE SET SCHEMA, DROP TABLE',
    steps: [
      {
        sql: `CREATE SCHEMA sch27; CREATE TABLE sch27.tab1 AS SELECT generate_series(1, 10) AS a; CREATE TABLE sch27.tab2 AS SELECT generate_series(1, 10) AS a;
              CREATE TABLE sch27.tab1_parent (a int PRIMARY KEY, b text) PARTITION BY LIST (a);
              CREATE TABLE public.tab27_child1 PARTITION OF sch27.tab1_parent FOR VALUES IN (1, 2, 3);
              CREATE TABLE public.tab27_child2 PARTITION OF sch27.tab1_parent FOR VALUES IN (4, 5, 6);
              INSERT INTO sch27.tab1_parent VALUES (1), (4); INSERT INTO sch27.tab1 SELECT generate_series(11, 20); INSERT INTO sch27.tab1_parent VALUES (2), (5)`,
      },
      { sql: 'CREATE TABLE sch27.tab3 AS SELECT generate_series(1, 10) AS a', point: 'CTAS mid-stream' },
      { sql: 'INSERT INTO sch27.tab3 VALUES (11); ALTER TABLE sch27.tab3 SET SCHEMA public; INSERT INTO public.tab3 VALUES (12)', point: 'moved schema' },
      { sql: 'DROP TABLE sch27.tab2; INSERT INTO sch27.tab1 VALUES (21), (22)', point: 'dropped' },
    ],
  },
  {
    name: 'S28 subscribe_use_index: FULL identity with duplicates on two columns, NULLs in the old row, a FULL partitioned table',
    steps: [
      {
        sql: `CREATE TABLE ri_full (x int, y text); ALTER TABLE ri_full REPLICA IDENTITY FULL; INSERT INTO ri_full SELECT i % 10, (i % 10)::text FROM generate_series(0, 10) i;
              DELETE FROM ri_full WHERE x IN (5, 6); UPDATE ri_full SET x = 100, y = '200' WHERE x IN (1, 2)`,
      },
      {
        sql: 'CREATE TABLE ri_null (x int, y int); ALTER TABLE ri_null REPLICA IDENTITY FULL; INSERT INTO ri_null VALUES (1, NULL), (2, NULL), (3, NULL); UPDATE ri_null SET x = x + 1 WHERE x = 1; DELETE FROM ri_null WHERE x = 3',
        point: 'NULLs matched',
      },
      {
        sql: `CREATE TABLE users_part (user_id bigint, value_1 int, value_2 int) PARTITION BY RANGE (value_1);
              CREATE TABLE users_part_0 PARTITION OF users_part FOR VALUES FROM (0) TO (10); CREATE TABLE users_part_1 PARTITION OF users_part FOR VALUES FROM (10) TO (20);
              ALTER TABLE users_part REPLICA IDENTITY FULL; ALTER TABLE users_part_0 REPLICA IDENTITY FULL; ALTER TABLE users_part_1 REPLICA IDENTITY FULL;
              INSERT INTO users_part SELECT i % 100, i % 20, i FROM generate_series(0, 100) i;
              UPDATE users_part SET value_1 = 0 WHERE user_id = 4; DELETE FROM users_part WHERE user_id = 1 AND value_1 = 1; DELETE FROM users_part WHERE user_id = 12 AND value_1 = 12;
              UPDATE users_part SET value_1 = 15 WHERE user_id = 5`,
        point: 'FULL partitions',
      },
    ],
  },
  {
    name: 'S30 sequences: several, one with a quote in its name, rolled back advances, one dropped and made again',
    steps: [
      {
        sql: `CREATE TABLE seq_test (v bigint); CREATE SEQUENCE regress_s1; CREATE SEQUENCE "regress'quote";
              INSERT INTO seq_test SELECT nextval('regress_s1') FROM generate_series(1, 100); INSERT INTO seq_test SELECT nextval('"regress''quote"') FROM generate_series(1, 100)`,
      },
      {
        sql: "CREATE SEQUENCE regress_s2; INSERT INTO seq_test SELECT nextval('regress_s2') FROM generate_series(1, 100); INSERT INTO seq_test SELECT nextval('regress_s1') FROM generate_series(1, 100)",
        point: 'sequences used',
      },
      { sql: "CREATE SEQUENCE regress_s3; BEGIN; INSERT INTO seq_test SELECT nextval('regress_s2') FROM generate_series(1, 100); ROLLBACK" },
      {
        sql: "CREATE SEQUENCE regress_s4 START 1 INCREMENT 2; SELECT nextval('regress_s4'); DROP SEQUENCE regress_s4; CREATE SEQUENCE regress_s4 START 10 INCREMENT 2",
        point: 'made again',
      },
    ],
  },
  {
    name: 'S31-S38 bugs: a partial index calling a function, temporary and unlogged tables, the identity index switched, a schema renamed inside a transaction, FULL with a dropped column and with a fast default, DETACH CONCURRENTLY, upserts and MERGE',
    steps: [
      {
        sql: "CREATE TABLE b31 (a int PRIMARY KEY, b int); CREATE FUNCTION double(x int) RETURNS int IMMUTABLE LANGUAGE SQL AS 'select x * 2'; CREATE INDEX ON b31 (b) WHERE a > double(1); INSERT INTO b31 VALUES (1, 2)",
      },
      { sql: 'CREATE TEMPORARY TABLE tt1 AS SELECT 1 AS a; UPDATE tt1 SET a = 2; CREATE UNLOGGED TABLE tu1 AS SELECT 1 AS a; UPDATE tu1 SET a = 2' },
      { session: 'b', sql: 'CREATE TEMPORARY TABLE tt1 (x int); INSERT INTO tt1 VALUES (1)' },
      {
        sql: `CREATE TABLE b33 (a int NOT NULL, b int NOT NULL); CREATE UNIQUE INDEX b33_a ON b33 (a); CREATE UNIQUE INDEX b33_b ON b33 (b);
              ALTER TABLE b33 REPLICA IDENTITY USING INDEX b33_a; INSERT INTO b33 VALUES (1, 1), (2, 2);
              BEGIN; ALTER TABLE b33 REPLICA IDENTITY USING INDEX b33_b; UPDATE b33 SET a = -a WHERE a = 1; DELETE FROM b33 WHERE a = 2; COMMIT`,
      },
      {
        sql: `CREATE SCHEMA s34a; CREATE TABLE s34a.t1 (c1 int); INSERT INTO s34a.t1 VALUES (0);
              BEGIN; INSERT INTO s34a.t1 VALUES (1); ALTER SCHEMA s34a RENAME TO s34b; CREATE SCHEMA s34a; CREATE TABLE s34a.t1 (c1 int);
              INSERT INTO s34a.t1 VALUES (2); INSERT INTO s34b.t1 VALUES (3); COMMIT`,
      },
      {
        sql: 'CREATE TABLE b35 (a int, b_drop int, c int); ALTER TABLE b35 REPLICA IDENTITY FULL; INSERT INTO b35 VALUES (1, 1, 1); ALTER TABLE b35 DROP COLUMN b_drop; UPDATE b35 SET a = 100',
      },
      {
        sql: 'CREATE TABLE b36 (a int); ALTER TABLE b36 REPLICA IDENTITY FULL; INSERT INTO b36 VALUES (1); ALTER TABLE b36 ADD COLUMN b bool DEFAULT false NOT NULL; INSERT INTO b36 VALUES (2, true); UPDATE b36 SET a = a + 1',
      },
      {
        sql: 'CREATE TABLE b37 (a int, b int) PARTITION BY LIST (a); CREATE TABLE b37_1 PARTITION OF b37 FOR VALUES IN (1); CREATE TABLE b37_2 PARTITION OF b37 FOR VALUES IN (2); INSERT INTO b37 VALUES (1, 1), (2, 1)',
      },
      { sql: 'ALTER TABLE b37 DETACH PARTITION b37_1 CONCURRENTLY' },
      { sql: 'INSERT INTO b37_1 VALUES (1, 2); INSERT INTO b37 VALUES (2, 2)' },
      {
        sql: `CREATE TABLE b38 (a int PRIMARY KEY, b int); INSERT INTO b38 VALUES (1, 1) ON CONFLICT (a) DO UPDATE SET b = excluded.b;
              INSERT INTO b38 VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b; INSERT INTO b38 VALUES (1, 3) ON CONFLICT DO NOTHING;
              INSERT INTO b38 VALUES (2, 2) ON CONFLICT DO NOTHING;
              MERGE INTO b38 t USING (VALUES (2, 20), (3, 30)) s(a, b) ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = s.b WHEN NOT MATCHED THEN INSERT VALUES (s.a, s.b)`,
        point: 'bugs',
      },
    ],
  },
  {
    name: 'S39 (sharper): FULL identity rows equal by = but not by value: numeric, float, interval, jsonb, box, json',
    steps: [
      {
        sql: `CREATE TABLE ri_num (k numeric, v text); ALTER TABLE ri_num REPLICA IDENTITY FULL; INSERT INTO ri_num VALUES (1.0, 'x'), (1.00, 'x');
              CREATE TABLE ri_f8 (k float8, v text); ALTER TABLE ri_f8 REPLICA IDENTITY FULL; INSERT INTO ri_f8 VALUES ('0', 'x'), ('-0', 'x');
              CREATE TABLE ri_iv (k interval, v text); ALTER TABLE ri_iv REPLICA IDENTITY FULL; INSERT INTO ri_iv VALUES ('1 day', 'x'), ('24 hours', 'x');
              CREATE TABLE ri_jsonb (k jsonb, v text); ALTER TABLE ri_jsonb REPLICA IDENTITY FULL; INSERT INTO ri_jsonb VALUES ('{"a": 1.0}', 'x'), ('{"a": 1}', 'x');
              CREATE TABLE ri_box (k box, v text); ALTER TABLE ri_box REPLICA IDENTITY FULL; INSERT INTO ri_box VALUES ('(0,0),(1,1)', 'x'), ('(5,5),(6,6)', 'x');
              CREATE TABLE ri_json (k json, v text); ALTER TABLE ri_json REPLICA IDENTITY FULL; INSERT INTO ri_json VALUES ('{"a":1}', 'x'), ('{"a": 1}', 'x')`,
      },
      {
        sql: `UPDATE ri_num SET v = 'y' WHERE k::text = '1.00'; UPDATE ri_f8 SET v = 'y' WHERE k::text = '-0'; UPDATE ri_iv SET v = 'y' WHERE k::text = '24:00:00';
              UPDATE ri_jsonb SET v = 'y' WHERE k::text = '{"a": 1}'; UPDATE ri_box SET v = 'y' WHERE k ~= '(5,5),(6,6)';
              UPDATE ri_json SET v = 'y' WHERE k::text = '{"a": 1}'; DELETE FROM ri_json WHERE k::text = '{"a":1}'`,
        point: 'equal but not the same',
      },
    ],
  },
];

let fx: ArchiveFixture;
let archiver: PitrProcess | undefined;
const points = new Map<string, RecordedPoint[]>();

beforeAll(async () => {
  fx = await ArchiveFixture.create();
  const init = await fx.init(['--log-level', 'warn']);
  if (init.code !== 0) throw new Error(`pitr init failed:\n${init.stderr}`);
  archiver = fx.startArchiver();
  await archiver.waitForState('streaming');
  const backup = await fx.backup();
  if (backup.code !== 0) throw new Error(`pitr backup failed:\n${backup.stderr}`);
  const recorder = new PointRecorder(fx);
  for (const [i, scenario] of SCENARIOS.entries()) {
    const schema = `case_${i + 1}`;
    const sessions = { a: new Client({ connectionString: fx.source }), b: new Client({ connectionString: fx.source }) };
    await sessions.a.connect();
    await sessions.b.connect();
    try {
      if (scenario.requires && (await sessions.a.query(scenario.requires)).rowCount === 0) continue;
      await sessions.a.query(`CREATE SCHEMA ${schema}`);
      for (const session of [sessions.a, sessions.b]) await session.query(`SET search_path = ${schema}, public`);
      const recorded: RecordedPoint[] = [];
      for (const step of scenario.steps) {
        const session = sessions[step.session ?? 'a'];
        if (step.fails) await expect(session.query(step.sql)).rejects.toThrow(step.fails);
        else {
          try {
            await session.query(step.sql);
          } catch (error) {
            throw new Error(`${scenario.name}: the source refused ${step.sql}: ${(error as Error).message}`, { cause: error });
          }
        }
        if (step.point) recorded.push(await recorder.record(`${scenario.name.split(' ')[0]} ${step.point}`));
      }
      points.set(scenario.name, recorded);
    } finally {
      await sessions.a.end();
      await sessions.b.end();
    }
  }
  expect((await runPitr(['mark', 'end-of-cases', '--source', fx.source, '--log-level', 'warn'])).code).toBe(0);
  await fx.waitCaughtUp();
  expect(await archiver.stop()).toBe(0);
  archiver = undefined;
}, 240_000);

afterAll(async () => {
  await archiver?.stop('SIGKILL');
  await fx?.destroy();
});

let restores = 0;
describe.each(SCENARIOS.map((s) => [s.name, s] as const))('%s', (name) => {
  test('a restore to each marked point equals the source then, rows and schema', async () => {
    const recorded = points.get(name);
    if (!recorded) return; // not run on this server (see `requires`)
    const problems: string[] = [];
    for (const point of recorded) {
      const difference = await restoreDifference(fx, point, `case_${++restores}`);
      if (difference) problems.push(difference);
    }
    expect(problems.join('\n\n')).toBe('');
  });
});
