import { formatBytes } from '../config/units';
import { describeGap } from '../archive/archive-gaps';
import { listRepository, openArchive, summarizeRepositories, type Point, type RepositorySummary } from '../ops/list';
import type { Command } from './command';
import { writeJson } from '../ops/json-document';
import { withReadRepositories } from './repository-option';

const pointText = (p: Point | null): string => (p ? `${p.time} (${p.lsn})` : '-');

/** Rows as aligned columns. */
function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** The "Repositories" block: each repository given, its storage class and what its archive takes up. */
function repositoriesBlock(repositories: RepositorySummary[]): string[] {
  const klass = (r: RepositorySummary): string =>
    r.storageClass === null ? 'default' : `${r.storageClass} (${r.storageClassFrom === 'setting' ? 'setting' : 'objects'})`;
  const rows = table([
    ['NAME', 'LOCATION', 'STORAGE CLASS', 'OBJECTS', 'SIZE'],
    ...repositories.map((r) => [
      r.name,
      r.location,
      klass(r),
      r.objects === undefined ? '?' : String(r.objects),
      r.bytes === undefined ? '?' : formatBytes(r.bytes),
    ]),
  ]);
  const from = new Set(repositories.map((r) => r.sizeFrom));
  const sources = [...(from.has('index') ? ["the archive's index"] : []), ...(from.has('manifests') ? ['the segment manifests (no index yet)'] : [])];
  const lines = ['Repositories', ...rows.map((r) => `  ${r}`)];
  if (sources.length > 0) lines.push(`  objects and size: segment data and backup objects, as ${sources.join(' or ')} and the backup manifests record them`);
  for (const r of repositories) {
    if (r.sizeFrom === 'listing') lines.push(`  ${r.name}: objects and size from a listing: ${r.sizeProblem ?? ''}`);
    else if (r.sizeProblem) lines.push(`  ${r.name}: size unknown: ${r.sizeProblem}`);
  }
  return lines;
}

export const listCommand: Command = {
  name: 'list',
  summary: 'show the base backups, the archived stream, its gaps and marks, and the recoverable window',
  usage: 'pitr list [--repo REPO] [--json]',
  examples: ['pitr list --repo gs://backups/shop', 'pitr list --repo /var/lib/pitr/shop --json'],
  async run({ options, out }) {
    const { report, repositories } = await withReadRepositories(options, async (set) => {
      const opened = await openArchive(set.repo);
      const listed = await listRepository(set.repo, opened);
      return { report: listed, repositories: await summarizeRepositories(set, opened) };
    });
    if (options.flag('json')) {
      const { repository: _repository, ...doc } = report;
      writeJson(out, { ...doc, repositories });
      return 0;
    }
    const lines: string[] = [...repositoriesBlock(repositories), ''];
    if (report.backups.length === 0) lines.push('backups: none');
    else {
      lines.push(
        ...table([
          ['BACKUP', 'ALIGNED LSN', 'STARTED', 'STORED', 'SECONDS', 'TABLES', 'ROWS'],
          ...report.backups.map((b) => [b.id, b.alignedLsn, b.startTime, formatBytes(b.storedBytes), b.seconds.toFixed(1), String(b.tables), String(b.rows)]),
        ]),
      );
    }
    lines.push('');
    lines.push(`segments: ${report.segments.count}, first commit ${pointText(report.segments.first)}, last commit ${pointText(report.segments.last)}`);
    if (report.gaps.length === 0) lines.push('gaps: none');
    for (const gap of report.gaps) lines.push(`gap: ${describeGap(gap)}`);
    for (const mark of report.marks) lines.push(`mark: ${mark.name} in ${mark.segment}`);
    // ranges cut off by a later gap: still restorable, from the backups taken before it
    const older = report.window.earliest ? report.ranges.slice(0, -1) : report.ranges;
    for (const range of older) lines.push(`restorable before a gap: ${pointText(range.earliest)} to ${pointText(range.latest)} (from backup ${range.backup})`);
    lines.push(`recoverable window: ${pointText(report.window.earliest)} to ${pointText(report.window.latest)}`);
    if (!report.window.earliest && report.gaps.length > 0 && report.backups.length > 0)
      lines.push('no backup after the last gap: nothing after it can be restored; take a new base backup ("pitr backup")');
    out.write(lines.join('\n') + '\n');
    return 0;
  },
};
