import type { ClientConfig } from 'pg';
import type { Repository } from '../archive/repository';
import { listBackups } from '../archive/backup-catalog';
import { parseLsn } from '../pg/lsn';
import { withClient } from '../pg/with-client';
import { isoMicros } from '../pg/pg-time';
import { messageOf } from '../errors';
import { gapBounds, gapCause, type ArchiveGap } from '../archive/archive-gaps';
import { recoverableWindow, toPoint, type BackupBoundCache, type Point } from '../archive/recoverable-window';
import { foreignRepositoryReason, ownerOf, type RepositoryOwner } from './repository-owner';
import { repositoryLag, type RepositoryLagEntry, type StatusMember } from './repository-lag';

/**
 * The verdict, Nagios-style: healthy (OK), degraded (WARNING), broken (CRITICAL), and unknown (UNKNOWN)
 * when a part could not be checked and nothing else is wrong. The worst reason decides: critical, then
 * warning, then unknown.
 */
export type Health = 'healthy' | 'degraded' | 'broken' | 'unknown';
/** How bad one reason is: each maps to the health it makes (critical → broken, warning → degraded). */
export type Severity = 'critical' | 'warning' | 'unknown';

export interface StatusReason {
  severity: Severity;
  message: string;
}
/** The archiver as status sees it from the source: its slot active and moving, active but stuck, inactive. */
export type ArchiverActivity = 'running' | 'stalled' | 'stopped' | 'unknown';

export interface SlotStatus {
  name: string;
  /** False when the slot does not exist (or the source could not be asked). */
  exists: boolean;
  active: boolean | null;
  activePid: number | null;
  confirmedFlushLsn: string | null;
  walStatus: string | null;
  safeWalSize: number | null;
  /** Bytes of WAL between the source's current position and the slot's confirmed position. */
  lagBytes: number | null;
}

export interface BackupStatus {
  id: string;
  endTime: string;
  ageSeconds: number;
}

export interface StatusReport {
  health: Health;
  /** Most severe first. */
  reasons: StatusReason[];
  /** Seconds since the newest archived commit (the heartbeat keeps this moving on an idle source). */
  rpoSeconds: number | null;
  slot: SlotStatus;
  backup: BackupStatus | null;
  /** The restorable range reaching the archive's end; earliest is null when no backup can be replayed to it. */
  window: { earliest: Point | null; latest: Point | null };
  /** Gaps recorded in the repository (a re-created replication slot), oldest first; broken links are found by `pitr verify`. */
  gaps: ArchiveGap[];
  archiver: ArchiverActivity;
  /** The limits it was checked against, in seconds and bytes; a critical one is null when unset. */
  thresholds: StatusThresholds;
  /** The source the repository belongs to (its repository.json); null when it has none, absent when not looked at. */
  repository?: RepositoryOwner | null;
  /** With several --repo: each one's newest segment and lag (the report's other facts are of the first). */
  repositories?: RepositoryLagEntry[];
}

/** The warning limits, and the critical ones next to them (unset: that check is never critical). */
export interface StatusLimits {
  /** Milliseconds. */
  maxLag: number;
  criticalLag?: number | undefined;
  /** Bytes. */
  maxSlotLag: number;
  criticalSlotLag?: number | undefined;
  /** Milliseconds. */
  maxBackupAge: number;
  criticalBackupAge?: number | undefined;
  /** Milliseconds the archiver may be stopped (counted from the newest archived commit) before that is critical; warning at once. */
  criticalStopped?: number | undefined;
}

export interface StatusThresholds {
  maxLagSeconds: number;
  criticalLagSeconds: number | null;
  maxSlotLagBytes: number;
  criticalSlotLagBytes: number | null;
  maxBackupAgeSeconds: number;
  criticalBackupAgeSeconds: number | null;
  criticalStoppedSeconds: number | null;
}

export function thresholdsOf(limits: StatusLimits): StatusThresholds {
  const s = (ms: number | undefined): number | null => (ms === undefined ? null : ms / 1000);
  return {
    maxLagSeconds: limits.maxLag / 1000,
    criticalLagSeconds: s(limits.criticalLag),
    maxSlotLagBytes: limits.maxSlotLag,
    criticalSlotLagBytes: limits.criticalSlotLag ?? null,
    maxBackupAgeSeconds: limits.maxBackupAge / 1000,
    criticalBackupAgeSeconds: s(limits.criticalBackupAge),
    criticalStoppedSeconds: s(limits.criticalStopped),
  };
}

export interface StatusInput {
  source: { config: ClientConfig; display: string };
  slotName: string;
  repo: Repository;
  limits: StatusLimits;
  now?: Date;
  /** Kept across calls by a long-running caller (the archiver's endpoint), so backups' bounds are decoded once. */
  boundCache?: BackupBoundCache;
  /** Several --repo: every one, `repo` (the first) among them, compared by their newest segments. */
  members?: readonly StatusMember[];
}

interface RepositoryFacts {
  lastCommit: Point | null;
  backup: BackupStatus | null;
  window: StatusReport['window'];
  gaps: ArchiveGap[];
}

/** Connecting to the source and asking it about the slot each give up after this long. */
const SOURCE_TIMEOUT_MS = 5_000;

const seconds = (ms: number): string => (ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`);
const bytesText = (n: number): string => `${n} bytes`;

async function readRepository(repo: Repository, now: number, boundCache: BackupBoundCache | undefined): Promise<RepositoryFacts> {
  const manifests = await listBackups(repo);
  manifests.sort((a, b) => {
    const d = parseLsn(a.alignedLsn) - parseLsn(b.alignedLsn);
    return d < 0n ? -1 : d > 0n ? 1 : a.id.localeCompare(b.id);
  });
  const newest = manifests[manifests.length - 1];
  // the same window as `pitr list` and the restore planner
  const window = await recoverableWindow(repo, { backups: manifests, recordedOnly: true, ...(boundCache ? { cache: boundCache } : {}) });
  return {
    lastCommit: window.newestCommit && toPoint(window.newestCommit),
    backup: newest ? { id: newest.id, endTime: isoMicros(newest.endTime), ageSeconds: (now - Date.parse(newest.endTime)) / 1000 } : null,
    window: { earliest: window.earliest && toPoint(window.earliest), latest: window.latest && toPoint(window.latest) },
    gaps: window.gaps,
  };
}

function readSlot(input: StatusInput): Promise<SlotStatus> {
  // a short-lived session with every wait bounded: a probe must answer, not hang behind a stuck source
  const timeouts = { connectionTimeoutMillis: SOURCE_TIMEOUT_MS, statement_timeout: SOURCE_TIMEOUT_MS, query_timeout: SOURCE_TIMEOUT_MS };
  return withClient(input.source, timeouts, async (client) => {
    const { rows } = await client.query<{
      active: boolean;
      active_pid: number | null;
      confirmed_flush_lsn: string | null;
      wal_status: string | null;
      safe_wal_size: string | null;
      lag_bytes: string | null;
    }>(
      `SELECT active, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn, wal_status, safe_wal_size::text AS safe_wal_size,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag_bytes
         FROM pg_replication_slots WHERE slot_name = $1`,
      [input.slotName],
    );
    const row = rows[0];
    if (!row) return missingSlot(input.slotName);
    return {
      name: input.slotName,
      exists: true,
      active: row.active,
      activePid: row.active_pid,
      confirmedFlushLsn: row.confirmed_flush_lsn,
      walStatus: row.wal_status,
      safeWalSize: row.safe_wal_size === null ? null : Number(row.safe_wal_size),
      lagBytes: row.lag_bytes === null ? null : Number(row.lag_bytes),
    };
  });
}

/** What is known of a slot that does not exist, or could not be looked at. */
export function missingSlot(name: string): SlotStatus {
  return { name, exists: false, active: null, activePid: null, confirmedFlushLsn: null, walStatus: null, safeWalSize: null, lagBytes: null };
}

/**
 * Which limit a value exceeds: the critical one when set and exceeded, else the warning one, else none.
 * The reason names the flag it crossed, so the fix is in the message.
 */
function exceeded(
  value: number,
  warning: number,
  critical: number | undefined,
  flags: [string, string],
): { severity: Severity; flag: string; limit: number } | null {
  if (critical !== undefined && value > critical) return { severity: 'critical', flag: flags[1], limit: critical };
  if (value > warning) return { severity: 'warning', flag: flags[0], limit: warning };
  return null;
}

const RANK: Record<Severity, number> = { critical: 0, warning: 1, unknown: 2 };

export function healthOf(reasons: readonly StatusReason[]): Health {
  if (reasons.some((r) => r.severity === 'critical')) return 'broken';
  if (reasons.some((r) => r.severity === 'warning')) return 'degraded';
  return reasons.length > 0 ? 'unknown' : 'healthy';
}

/**
 * Health of the archive, from the source's slot and the repository. Never throws for unreachable parts:
 * an unreachable source is critical (nothing can be archived), an unreadable repository is unknown.
 */
export async function archiveStatus(input: StatusInput): Promise<StatusReport> {
  const now = (input.now ?? new Date()).getTime();
  const reasons: StatusReason[] = [];
  const add = (severity: Severity, message: string): void => void reasons.push({ severity, message });
  const { limits } = input;

  let slot: SlotStatus = missingSlot(input.slotName);
  let sourceReached = false;
  try {
    slot = await readSlot(input);
    sourceReached = true;
  } catch (error) {
    add('critical', `source unreachable: ${messageOf(error)}`);
  }

  let facts: RepositoryFacts = { lastCommit: null, backup: null, window: { earliest: null, latest: null }, gaps: [] };
  let repoReadable = false;
  let owner: RepositoryOwner | null = null;
  try {
    const identity = await input.repo.identity();
    if (!identity) add('critical', `repository ${input.repo.storage.location} is empty or not initialised (no repository.json); run "pitr init"`);
    else {
      owner = ownerOf(input.repo.storage.location, identity);
      const foreign = sourceReached ? await foreignRepositoryReason(input.source, owner) : null;
      if (foreign) add('critical', foreign);
      facts = await readRepository(input.repo, now, input.boundCache);
      repoReadable = true;
    }
  } catch (error) {
    add('unknown', `repository ${input.repo.storage.location} unreadable: ${messageOf(error)}`);
  }

  const rpoSeconds = facts.lastCommit ? (now - Date.parse(facts.lastCommit.time)) / 1000 : null;
  const rpoOver = rpoSeconds === null ? null : exceeded(rpoSeconds * 1000, limits.maxLag, limits.criticalLag, ['--max-lag', '--critical-lag']);
  if (repoReadable) {
    if (facts.lastCommit === null) add('critical', 'repository holds no archived segments');
    else if (rpoSeconds !== null && rpoOver)
      add(
        rpoOver.severity,
        `rpo ${seconds(rpoSeconds * 1000)} exceeds ${rpoOver.flag} ${seconds(rpoOver.limit)} (newest archived commit ${facts.lastCommit.time})`,
      );
    const lastGap = facts.gaps[facts.gaps.length - 1];
    const ageOver =
      facts.backup && exceeded(facts.backup.ageSeconds * 1000, limits.maxBackupAge, limits.criticalBackupAge, ['--max-backup-age', '--critical-backup-age']);
    if (!facts.backup) add('warning', 'no base backup');
    else if (lastGap && facts.window.earliest === null)
      // every backup is older than the gap: nothing archived since can be restored, whatever the RPO says
      add(
        'critical',
        `the archive has a gap ${gapBounds(lastGap)} (${gapCause(lastGap)}) and no base backup after it: nothing after ${lastGap.to.time} can be restored; take a new base backup now ("pitr backup")`,
      );
    else if (ageOver)
      add(
        ageOver.severity,
        `newest backup ${facts.backup.id} is ${seconds(facts.backup.ageSeconds * 1000)} old, more than ${ageOver.flag} ${seconds(ageOver.limit)}`,
      );
  }

  let archiver: ArchiverActivity = 'unknown';
  if (sourceReached) {
    if (!slot.exists) add('critical', `replication slot "${slot.name}" is missing; the archive has a gap from here on; run "pitr init" and take a new backup`);
    else if (slot.walStatus === 'lost')
      add(
        'critical',
        `replication slot "${slot.name}" was invalidated (wal_status lost): the WAL it needed was removed and the archive has a gap; drop the slot, run "pitr init" and take a new backup`,
      );
    if (slot.exists) {
      if (!slot.active) {
        archiver = 'stopped';
        // PostgreSQL 15 does not say since when a slot is inactive: the newest archived commit (the heartbeat's while it ran) bounds it
        const stoppedMs = rpoSeconds === null ? null : rpoSeconds * 1000;
        const long = limits.criticalStopped !== undefined && stoppedMs !== null && stoppedMs > limits.criticalStopped;
        add(
          long ? 'critical' : 'warning',
          long && stoppedMs !== null
            ? `archiver stopped (slot "${slot.name}" inactive) for ${seconds(stoppedMs)} at least, longer than --critical-stopped ${seconds(limits.criticalStopped ?? 0)}`
            : `archiver stopped (slot "${slot.name}" inactive)`,
        );
      } else archiver = rpoOver ? 'stalled' : 'running';
      const slotOver =
        slot.lagBytes === null ? null : exceeded(slot.lagBytes, limits.maxSlotLag, limits.criticalSlotLag, ['--max-slot-lag', '--critical-slot-lag']);
      if (slot.lagBytes !== null && slotOver)
        add(slotOver.severity, `slot "${slot.name}" lags ${bytesText(slot.lagBytes)} behind, more than ${slotOver.flag} ${bytesText(slotOver.limit)}`);
    }
  }

  const lag = input.members && input.members.length > 1 ? await repositoryLag(input.members, limits.maxLag) : undefined;
  if (lag) reasons.push(...lag.reasons);

  // stable sort: most severe first, in the order found within a severity
  reasons.sort((a, b) => RANK[a.severity] - RANK[b.severity]);
  return {
    health: healthOf(reasons),
    reasons,
    rpoSeconds,
    slot,
    backup: facts.backup,
    window: facts.window,
    gaps: facts.gaps,
    archiver,
    thresholds: thresholdsOf(limits),
    repository: owner,
    ...(lag ? { repositories: lag.entries } : {}),
  };
}

/** The Nagios plugin statuses: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
export function statusExitCode(health: Health): number {
  switch (health) {
    case 'healthy':
      return 0;
    case 'degraded':
      return 1;
    case 'broken':
      return 2;
    case 'unknown':
      return STATUS_UNKNOWN;
    default: {
      const never: never = health;
      throw new Error(`unknown health ${String(never)}`);
    }
  }
}

/** `pitr status`'s exit status when it could not check at all (bad usage, unreadable configuration): Nagios' UNKNOWN. */
export const STATUS_UNKNOWN = 3;
