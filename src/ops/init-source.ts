import type { Client } from 'pg';
import { newestBackup } from '../archive/backup-catalog';
import type { Repository } from '../archive/repository';
import { latestSegmentOf, newSlotCreation, storeSlotCreation, type SlotCreation } from '../archive/slot-creation';
import { checkNewWriter } from '../capture/new-writer-checks';
import { prepareSource } from '../capture/prepare-source';
import { checkSource, sourceFacts } from '../capture/source-checks';
import type { SourceConnection } from '../config/connection';
import { PitrError } from '../errors';
import type { Logger } from '../logger';
import { connectSource, identifySystem } from '../pg/connect';
import { formatLsn } from '../pg/lsn';
import { formatUnixMicros } from '../pg/pg-time';
import { withClient, withTransaction } from '../pg/with-client';

export interface InitInput {
  source: SourceConnection;
  repo: Repository;
  slot: string;
  publication: string;
  /** --apply-fixes: apply the fixes of failed checks that take effect at once, then check again. */
  applyFixes: boolean;
  takeover: boolean;
  /** --json: the failed checks are told in the error document too. */
  json: boolean;
  log: Logger;
  /** Where the fixes applied and the checks failed are told, line by line. */
  stderr: NodeJS.WritableStream;
}

/** What `pitr init` did, as `--json` prints it. */
export interface InitSummary {
  source: string;
  repository: string;
  systemIdentifier: string;
  database: string;
  serverVersion: string;
  slot: string;
  publication: string;
  created: string[];
  existing: string[];
  slotCreation: SlotCreation | null;
  gap: { from: { lsn: string; time: string } | null; to: { lsn: string; time: string } } | null;
  warnings: string[];
}

export interface InitResult {
  summary: InitSummary;
  /** The base backup to take now, for a human to run. */
  backupCommand: string;
}

/**
 * Checks the source (applying the table fixes when asked), checks that the repository may take this
 * source's archive, and prepares the source idempotently: publication, DDL capture and the slot, whose
 * creation is recorded in the repository. Refuses with SourceConfig when a check fails.
 */
export function initSource(input: InitInput): Promise<InitResult> {
  const { source, repo, slot, publication, log } = input;
  return withClient(source, async (client) => {
    await passChecks(client, input);
    const facts = await sourceFacts(client);
    const system = await identifySystem(source.config, source.display);
    await repo.storage.checkWritable();
    const existing = await repo.identity();
    if (existing && (existing.systemIdentifier !== system.systemIdentifier || existing.database !== system.database)) await repo.claim(system); // throws the clear error
    // read before the slot exists: nothing can be archived for it in between
    const latest = await checkNewWriter(repo, { system, display: source.display }, slot, input.takeover, log);
    const hadBackups = (await newestBackup(repo)) !== undefined;
    let record: SlotCreation | undefined;
    const result = await prepareSource(
      client,
      { slot, publication },
      log,
      () => connectSource(source.config, source.display),
      async (created) => {
        await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
        record = newSlotCreation({
          slot,
          systemIdentifier: system.systemIdentifier,
          database: system.database,
          consistentPoint: formatLsn(created.consistentPoint),
          createdAt: formatUnixMicros(created.createdAt),
          latestSegment: latestSegmentOf(latest),
        });
        await storeSlotCreation(repo, record);
      },
    );
    await repo.claim({ systemIdentifier: system.systemIdentifier, database: system.database });
    const backupCommand = `pitr backup --source ${source.display} --repo ${repo.storage.location}`;
    const gap = record ? slotGap(record, hadBackups, backupCommand) : null;
    const warnings: string[] = [];
    if (gap) warnings.push(gap.warning);
    if (facts.largeObjects > 0)
      warnings.push(`${facts.largeObjects} large object(s) found: large objects are not carried by logical decoding and are not archived`);
    for (const warning of warnings) log.warn({ event: 'warning' }, warning);
    const summary: InitSummary = {
      source: source.display,
      repository: repo.storage.location,
      systemIdentifier: system.systemIdentifier,
      database: system.database,
      serverVersion: facts.serverVersion,
      slot,
      publication,
      created: result.created,
      existing: result.existing,
      slotCreation: record ?? null,
      gap: gap && { from: gap.from, to: gap.to },
      warnings,
    };
    log.info({ event: 'initialized', ...summary }, 'source prepared');
    return { summary, backupCommand };
  });
}

/** The source's checks, after applying the fixes that take effect at once when asked; throws when any fails. */
async function passChecks(client: Client, input: InitInput): Promise<void> {
  const { source, slot, log, stderr, json } = input;
  let failures = await checkSource(client, slot);
  const fixable = failures.filter((failure) => failure.apply !== undefined);
  if (fixable.length > 0 && input.applyFixes) {
    // table fixes take effect at once; the others (settings needing a restart, role attributes) stay printed
    await withTransaction(client, async () => {
      for (const failure of fixable) await client.query(failure.apply as string);
    });
    for (const failure of fixable) {
      log.info({ event: 'fix_applied', sql: failure.apply }, `applied: ${failure.apply}`);
      stderr.write(`pitr: applied: ${failure.apply}\n`);
    }
    failures = await checkSource(client, slot);
  }
  if (failures.length > 0) {
    // on a terminal the fixes come before the error line; with --json they are in the error object too
    for (const failure of failures) stderr.write(`pitr: check failed: ${failure.problem}\n  fix: ${failure.fix}\n`);
    const where = json ? 'listed in "checks"' : 'above';
    throw new PitrError(
      'SourceConfig',
      `${failures.length} check${failures.length > 1 ? 's' : ''} failed on ${source.display}; nothing was changed`,
      failures.some((failure) => failure.apply !== undefined)
        ? `apply the fixes ${where} (pitr init --apply-fixes applies the table fixes) and run "pitr init" again`
        : `apply the fixes ${where} and run "pitr init" again`,
      { details: { checks: failures.map((failure) => ({ problem: failure.problem, fix: failure.fix, applicable: failure.apply !== undefined })) } },
    );
  }
}

/**
 * What a slot created while the repository already held an archive means: everything committed after
 * the newest archived commit and before the new slot's consistent point is lost to the archive.
 */
function slotGap(
  record: SlotCreation,
  hadBackups: boolean,
  backupCommand: string,
): { from: { lsn: string; time: string } | null; to: { lsn: string; time: string }; warning: string } | null {
  const to = { lsn: record.consistentPoint, time: record.createdAt };
  const latest = record.latestSegment;
  if (latest) {
    const from = { lsn: latest.lastCommitLsn, time: latest.lastCommitTime };
    return {
      from,
      to,
      warning:
        `the archive has a gap from its last archived commit, ${from.time} (${from.lsn}), to the new slot's start, ${to.time} (${to.lsn}): ` +
        `transactions committed in between were not archived and nothing in that gap can be restored; ` +
        `start the archiver and take a new base backup now: ${backupCommand}`,
    };
  }
  if (!hadBackups) return null;
  return {
    from: null,
    to,
    warning:
      `the repository holds base backups but no archived transactions: those backups cannot be replayed past the new slot's start, ${to.time} (${to.lsn}); ` +
      `start the archiver and take a new base backup now: ${backupCommand}`,
  };
}
