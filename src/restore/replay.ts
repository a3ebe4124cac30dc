import { parseLsn } from '../pg/lsn';
import { ApplyLane } from './apply-lane';
import type { ReplayInput, ReplayResult } from './replay-input';
import { prepareRoutes, readPartProgress, readTableProgress, recordRoutes } from './restore-state';
import { SegmentReplay, type ReplayStart } from './segment-replay';
import { TargetCatalog } from './target-catalog';
import { TargetColumns } from './target-columns';
import { holdTriggers } from './trigger-guard';

/*
 * Terminology:
 *   lane     one connection to the target with its queue of statements (ApplyLane)
 *   serial   a transaction holding DDL or TRUNCATE (with its neighbours of the same kind): applied on
 *            the first lane, committed with the restore's progress, while the other lanes are idle
 *   parallel any other transaction: each table's changes go to one lane (the same for the whole
 *            restore), in the source's order; each lane commits its share when the segment's checksum
 *            passed
 */

/**
 * Applies the archived transactions of the plan's segments after `resumeAfter`, in commit order per
 * table, up to the plan's stop rule. Segments are read, checksummed and decompressed ahead of the
 * appliers; nothing of a segment commits before its checksum passed. On failure every lane rolls
 * back what it has not committed and the error names the segment.
 */
export async function replaySegments(input: ReplayInput): Promise<ReplayResult> {
  const segments = input.plan.segments.filter((s) => input.resumeAfter === undefined || parseLsn(s.lastCommitLsn) > input.resumeAfter);
  const lanes: ApplyLane[] = [];
  const columns = new TargetColumns();
  try {
    await holdTriggers(input.client);
    for (let i = 0; i < Math.max(1, input.jobs); i++) {
      const client = await input.connect();
      // Triggers and foreign keys already did their work on the source. Progress rows commit with the
      // changes, so a commit lost in a crash of the target is simply replayed again. A batch of
      // thousands of keys must probe the key's index, never hash the whole table.
      await client.query('SET session_replication_role = replica; SET synchronous_commit = off; SET enable_hashjoin = off; SET enable_mergejoin = off');
      lanes.push(new ApplyLane(client, columns, input.tables !== undefined, input.log, input.signal));
    }
    const replay = new SegmentReplay(input, lanes, await replayStart(input));
    const started = process.hrtime.bigint();
    const result = await replay.run(segments, input.plan.lookAhead);
    logConnections(input, lanes, process.hrtime.bigint() - started);
    return result;
  } finally {
    for (const lane of lanes) {
      await lane.rollback();
      await lane.client.end().catch(() => undefined);
    }
  }
}

const seconds = (ns: bigint): number => Math.round(Number(ns) / 1e6) / 1e3;

/**
 * How busy each connection was, and with which tables (the five costliest): a connection busy nearly
 * all the replay while the others wait shows one table holding the restore back, which more --jobs
 * cannot help (a table's changes stay on one connection, in order).
 */
function logConnections(input: ReplayInput, lanes: readonly ApplyLane[], elapsedNs: bigint): void {
  const connections = lanes.map((lane, i) => ({
    connection: i + 1,
    busySeconds: seconds(lane.busyNs),
    tables: [...lane.tableNs]
      .sort((a, b) => (a[1] < b[1] ? 1 : a[1] > b[1] ? -1 : 0))
      .slice(0, 5)
      .map(([table, ns]) => ({ table, seconds: seconds(ns) })),
  }));
  input.log.info({ event: 'replay_connections', replaySeconds: seconds(elapsedNs), connections }, 'time each replay connection spent applying changes');
}

/**
 * The catalog and routes replay starts from. The backup's tables are routed by their names once, when
 * the first replay begins (the backup manifest maps each source relation id to its name then); a resumed
 * replay reads the routes it recorded, which follow the renames replayed since.
 */
async function replayStart(input: ReplayInput): Promise<ReplayStart> {
  const catalog = await TargetCatalog.load(input.client);
  const routes = await prepareRoutes(input.client);
  const wanted = new Map<number, boolean>();
  const added: [number, number][] = [];
  for (const table of input.plan.backup.tables) {
    wanted.set(table.oid, !input.tables || input.tables.has(`${table.schema}.${table.name}`));
    if (routes.has(table.oid)) continue;
    const target = catalog.byName(table.schema, table.name);
    if (!target) continue;
    routes.set(table.oid, target.oid);
    added.push([table.oid, target.oid]);
  }
  await recordRoutes(input.client, added);
  return { catalog, routes, wanted, tableProgress: await readTableProgress(input.client), partProgress: await readPartProgress(input.client) };
}
