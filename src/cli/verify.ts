import { verifyRepository, type VerifyOptions, type VerifyReport } from '../ops/verify';
import { locateGoodCopies, repairFromCopies, type CrossProblem, type Repair } from '../ops/verify-across';
import type { Repository } from '../archive/repository';
import { formatBytes } from '../config/units';
import { ErrorKind, PitrError } from '../errors';
import { parseTimeOption } from '../ops/log-transactions';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { existingRepositoryFrom, repositoriesFrom } from './repository-option';

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check every stored object against its manifest, the segment chain, and what each backup needs',
  usage: 'pitr verify [--repo REPO]... [--deep] [--ddl] [--since TIME] [--repair] [--json]',
  examples: [
    'pitr verify --repo gs://backups/shop',
    'pitr verify --repo /var/lib/pitr/shop --deep --json',
    'pitr verify --repo /var/lib/pitr/shop --ddl',
    "pitr verify --repo gs://backups/shop --since '2026-11-22 00:00+01'",
    'pitr verify --repo gs://backups/shop --repo gs://backups-eu/shop --repair',
  ],
  async run({ options, out, log }) {
    const since = options.string('since');
    const verifyOptions: VerifyOptions = {
      deep: options.flag('deep'),
      ddl: options.flag('ddl'),
      ...(since !== undefined ? { since: parseTimeOption('since', since, 'verify') } : {}),
    };
    if (options.strings('repo').length > 1 || options.flag('repair')) return verifySeveral(options, verifyOptions, out, log);
    const report = await verifyRepository(await existingRepositoryFrom(options), verifyOptions);
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = report;
      writeJson(out, doc);
    } else {
      const listed = [...report.problems, ...report.recordedGaps];
      const width = Math.max(0, ...listed.map((p) => p.object.length));
      for (const p of listed) out.write(`${p.status.padEnd(12)} ${p.object.padEnd(width)}  ${p.detail}\n`);
      const scope = report.withoutKey
        ? " without the encryption key (envelopes, names and presence; contents and the manifests' chain need the key)"
        : since !== undefined
          ? ` (what matters from ${since} on)`
          : '';
      const checked = `${report.checked.objects} objects, ${formatBytes(report.checked.bytes)} checked${scope}`;
      const recorded = report.recordedGaps.length;
      const known =
        recorded > 0 ? `; ${recorded} recorded gap${recorded === 1 ? '' : 's'} (a re-created replication slot): nothing inside can be restored` : '';
      out.write(
        report.ok
          ? `repository ${report.repository} is intact: ${checked}${known}\n`
          : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found in ${report.repository} (${checked})${known}\n`,
      );
    }
    // Exit status 7 (integrity violation) when anything is wrong, after the whole report. A recorded gap
    // with a backup after it is listed but is not wrong: failing for it forever would teach schedules
    // to ignore this command.
    // schema changes that cannot be replayed, and nothing else: the replay error's own status
    if (!report.ok && report.problems.every((p) => p.status === 'unreplayable')) return ErrorKind.Replay;
    return report.ok ? 0 : ErrorKind.Integrity;
  },
};

type Context = Parameters<Command['run']>[0];

/** Several repositories of one source: each verified, each problem with where a good copy is; with --repair, mended and verified again. */
async function verifySeveral(options: Context['options'], verifyOptions: VerifyOptions, out: Context['out'], log: Context['log']): Promise<number> {
  const repos = (await repositoriesFrom(options)).map((c) => c.repo);
  if (repos.length < 2)
    throw new PitrError(
      'Usage',
      '--repair needs at least two repositories',
      'name the damaged repository and one holding a good copy: --repo A --repo B --repair',
    );
  await checkSameSource(repos);
  const verifyAll = async (): Promise<{ repo: Repository; report: VerifyReport }[]> => {
    const verified = [];
    for (const repo of repos) verified.push({ repo, report: await verifyRepository(repo, verifyOptions) });
    return verified;
  };
  const before = await verifyAll();
  const located = await locateGoodCopies(before);
  let repairs: Repair[] | undefined;
  let after = before;
  let finalProblems = located;
  if (options.flag('repair')) {
    repairs = await repairFromCopies(before, located, log);
    if (repairs.length > 0) {
      after = await verifyAll();
      finalProblems = await locateGoodCopies(after);
    }
  }
  const ok = after.every((v) => v.report.ok);
  if (options.flag('json')) {
    writeJson(out, {
      ok,
      checked: {
        objects: after.reduce((n, v) => n + v.report.checked.objects, 0),
        bytes: after.reduce((n, v) => n + v.report.checked.bytes, 0),
      },
      problems: finalProblems,
      recordedGaps: after.flatMap((v) => v.report.recordedGaps.map((g) => ({ ...g, repository: v.repo.storage.location }))),
      repositories: after.map((v) => ({
        repository: v.repo.storage.location,
        ok: v.report.ok,
        checked: v.report.checked,
        problemCount: v.report.problems.length,
      })),
      ...(repairs ? { repairs, problemsBeforeRepair: located } : {}),
    });
  } else {
    writeReports(out, before, located);
    if (repairs) {
      for (const r of repairs)
        out.write(`${r.action === 'failed' ? 'not repaired' : 'repaired'} ${r.repository}: ${r.object}: ${r.detail}${r.from ? ` (from ${r.from})` : ''}\n`);
      if (repairs.length === 0) out.write('nothing to repair\n');
      else {
        out.write('verified again after repairing:\n');
        writeReports(out, after, finalProblems);
      }
    }
  }
  if (!ok && after.every((v) => v.report.problems.every((p) => p.status === 'unreplayable'))) return ErrorKind.Replay;
  return ok ? 0 : ErrorKind.Integrity;
}

function writeReports(out: Context['out'], verified: readonly { repo: Repository; report: VerifyReport }[], problems: readonly CrossProblem[]): void {
  for (const { repo, report } of verified) {
    const mine = problems.filter((p) => p.repository === repo.storage.location);
    const width = Math.max(0, ...mine.map((p) => p.object.length));
    for (const p of [...mine, ...report.recordedGaps]) {
      const copy =
        'goodCopy' in p && (p.status === 'missing' || p.status === 'corrupt')
          ? p.goodCopy
            ? `; good copy in ${p.goodCopy}`
            : '; no good copy in the other repositories'
          : '';
      out.write(`${p.status.padEnd(12)} ${p.object.padEnd(width)}  ${p.detail}${copy}\n`);
    }
    const checked = `${report.checked.objects} objects, ${formatBytes(report.checked.bytes)} checked`;
    out.write(
      report.ok
        ? `repository ${repo.storage.location} is intact: ${checked}\n`
        : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found in ${repo.storage.location} (${checked})\n`,
    );
  }
}

/** Repairing one repository from another only makes sense between repositories of the same source. */
async function checkSameSource(repos: readonly Repository[]): Promise<void> {
  let first: { location: string; systemIdentifier: string; database: string } | undefined;
  for (const repo of repos) {
    const identity = await repo.identity().catch(() => null);
    if (!identity) continue;
    if (!first) first = { location: repo.storage.location, ...identity };
    else if (identity.systemIdentifier !== first.systemIdentifier || identity.database !== first.database)
      throw new PitrError(
        'Repository',
        `repositories ${first.location} and ${repo.storage.location} belong to different sources (system identifiers ${first.systemIdentifier} and ${identity.systemIdentifier})`,
        'verify several repositories only when they hold copies of one archive',
      );
  }
}
