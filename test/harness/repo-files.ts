import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { localPathOf, objectNameOfPath } from '../../src/storage/local/local-layout';

/** The object name of every file under a local repository `dir` (a segment's file in its fan-out folder by its object name). */
export function listFiles(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const name = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? listFiles(dir, name) : [objectNameOfPath(name)];
  });
}

/** The file that holds object `name` in the local repository `dir`. */
export function objectFile(dir: string, name: string): string {
  return path.join(dir, ...localPathOf(name));
}

/** Segment data objects stored without their manifest yet: uploads a live archiver has under way (data first, manifest next). */
export function segmentUploadsUnderWay(dir: string): string[] {
  const names = listFiles(dir).filter((f) => f.startsWith('segments/'));
  return names.filter((f) => f.endsWith('.lz4') && !names.includes(`${f.slice(0, -'.lz4'.length)}.json`));
}

/** Copies of a repository for tests to damage, removed together. */
export class RepoCopies {
  private readonly dirs: string[] = [];

  constructor(private readonly prefix: string) {}

  copy(repoDir: string): string {
    const dir = mkdtempSync(path.join(tmpdir(), this.prefix));
    cpSync(repoDir, dir, { recursive: true });
    this.dirs.push(dir);
    return dir;
  }

  removeAll(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
