/**
 * Where a local repository keeps an object (docs/format.md, "Local directories"). Object names are the
 * same on every storage; on a local directory a segment's files (`segments/<HI>/<FIRST>-<END>…`) sit one
 * folder deeper, in a fan-out folder named after the first 12 digits of FIRST (one per 64 KiB of WAL),
 * so that no folder grows with the archive's age: a listing after a name reads the HI folder (at most
 * 65,536 fan-out folders) and the fan-out folders from that name on, not every file of the HI folder.
 * Repositories written before the fan-out keep their files flat in the HI folder; both are read.
 */

const SEGMENT_NAME = /^(segments\/[0-9A-F]{8})\/([0-9A-F]{12})[0-9A-F]{4}-[^/]*$/;
const FAN_OUT_FOLDER = /^[0-9A-F]{12}$/;
const HI_FOLDER = /^segments\/[0-9A-F]{8}$/;

/** The path of an object, relative to the repository root, as '/'-separated components. */
export function localPathOf(name: string): string[] {
  const match = SEGMENT_NAME.exec(name);
  if (!match?.[1] || !match[2]) return name.split('/');
  return [...match[1].split('/'), match[2], name.slice(match[1].length + 1)];
}

/** Where an object stored before the fan-out sits (flat in its HI folder), or undefined when its path never changed. */
export function flatPathOf(name: string): string[] | undefined {
  return SEGMENT_NAME.test(name) ? name.split('/') : undefined;
}

/**
 * The object-name prefix a sub-folder of `dir` stands for: its own path for an ordinary folder (`dir/entry/`),
 * and `dir/entry` for a fan-out folder, whose files are objects of `dir` whose names start with `entry`.
 */
export function folderKey(dir: string, entry: string): { fanOut: boolean; prefix: string } {
  if (HI_FOLDER.test(dir) && FAN_OUT_FOLDER.test(entry)) return { fanOut: true, prefix: `${dir}/${entry}` };
  return { fanOut: false, prefix: dir ? `${dir}/${entry}/` : `${entry}/` };
}

/** The object name a file stands for, from its path relative to the repository root ('/'-separated). */
export function objectNameOfPath(rel: string): string {
  const parts = rel.split('/');
  const leaf = parts[parts.length - 1] ?? '';
  const folder = parts[parts.length - 2] ?? '';
  const dir = parts.slice(0, -2).join('/');
  return parts.length >= 4 && folderKey(dir, folder).fanOut && leaf.startsWith(folder) ? `${dir}/${leaf}` : rel;
}
