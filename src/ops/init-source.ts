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

/** One repository init prepares, by the name output gives it. */
export interface InitRepository {
  name: string;
  repo: Repository;
}

export interface InitInput {
  source: SourceConnection;
  /** Every repository given, in order: each is checked before any is changed, then each is claimed. */
  repos: InitRepository[];
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
  /** With several repositories only: each one, in the order given (the fields above tell the first). */
  repositories?: InitRepositorySummary[];
}

/** What init did in one of several repositories. */
export interface InitRepositorySummary {
  name: string;
  location: string;
  slotCreation: SlotCreation | null;
  gap: InitSummary['gap'];
}

export interface InitResult {
  summary: InitSummary;
  /** The base backup to take now, for a human to run. */
  backupCommand: string;
}

/**
 * Checks the source (applying the table fixes when asked), checks that every repository may take this
 * source's archive, and prepares the source idempotently: publication, DDL capture and the slot, whose
 * creation is recorded in the repository. Refuses with SourceConfig when a check fails.
 */
export function initSource(input: InitInput): Promise<InitResult> {
  const { source, repos, slot, publication, log } = input;
  return withClient(source, async (client) => {
    await passChecks(client, input);
    const facts = await sourceFacts(client);
    const system = await identifySystem(source.config, source.display);
    const owner = { systemIdentifier: system.systemIdentifier, database: system.database };
    // every repository checked before any is changed: one that belongs to another source refuses the whole init
    const checked: { name: string; repo: Repository; latest: Awaited<ReturnType<typeof checkNewWriter>>; hadBackups: boolean }[] = [];
    for (const { name, repo } of repos) {
      await repo.storage.checkWritable();
      const existing = await repo.identity();
      if (existing && (existing.systemIdentifier !== system.systemIdentifier || existing.database !== system.database)) await repo.claim(owner); // throws the clear error
      // read before the slot exists: nothing can be archived for it in between
      const latest = await checkNewWriter(repo, { system, display: source.display }, slot, input.takeover, log);
      checked.push({ name, repo, latest, hadBackups: (await newestBackup(repo)) !== undefined });
    }
    // each repository records the slot's creation against its own newest segment (an async one may lag)
    const records = new Map<Repository, SlotCreation>();
    const result = await prepareSource(
      client,
      { slot, publication },
      log,
      () => connectSource(source.config, source.display),
      async (created) => {
        for (const { repo, latest } of checked) {
          await repo.claim(owner);
          const record = newSlotCreation({
            slot,
            ...owner,
            consistentPoint: formatLsn(created.consistentPoint),
            createdAt: formatUnixMicros(created.createdAt),
            latestSegment: latestSegmentOf(latest),
          });
          await storeSlotCreation(repo, record);
          records.set(repo, record);
        }
      },
    );
    for (const { repo } of checked) await repo.claim(owner);
    const backupCommand = `pitr backup --source ${source.display} ${repos.map(({ repo }) => `--repo ${repo.storage.location}`).join(' ')}`;
    const warnings: string[] = [];
    const prepared = checked.map(({ name, repo, hadBackups }) => {
      const record = records.get(repo);
      const gap = record ? slotGap(record, hadBackups, backupCommand) : null;
      if (gap) warnings.push(repos.length > 1 ? `repository ${name}: ${gap.warning}` : gap.warning);
      return { name, location: repo.storage.location, slotCreation: record ?? null, gap: gap && { from: gap.from, to: gap.to } };
    });
    if (facts.largeObjects > 0)
      warnings.push(`${facts.largeObjects} large object(s) found: large objects are not carried by logical decoding and are not archived`);
    for (const warning of warnings) log.warn({ event: 'warning' }, warning);
    const first = prepared[0] as InitRepositorySummary;
    const summary: InitSummary = {
      source: source.display,
      repository: first.location,
      systemIdentifier: system.systemIdentifier,
      database: system.database,
      serverVersion: facts.serverVersion,
      slot,
      publication,
      created: result.created,
      existing: result.existing,
      slotCreation: first.slotCreation,
      gap: first.gap,
      warnings,
      ...(prepared.length > 1 ? { repositories: prepared } : {}),
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
