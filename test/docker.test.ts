import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { OPTIONS } from '../src/config/options';
import { parseArgs } from '../src/config/parse-args';
import { runPitr } from './harness/pitr-process';

/**
 * There is no Docker engine where the tests run, so these check what the image and the compose file
 * refer to: files that exist, the real CLI, commands and flags it accepts, variables it reads.
 */
const ROOT = path.resolve(__dirname, '..');
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text
    .split('\n')
    .filter((l) => !l.trim().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [keyword, ...rest] = l.split(/\s+/);
      return { keyword: (keyword as string).toUpperCase(), args: rest.join(' ') };
    });
}

/** A compose list written as ['a', "b"]: JSON once the single quotes are double ones. */
function flowList(text: string): string[] {
  return JSON.parse(text.replace(/'([^']*)'/g, (_, s: string) => JSON.stringify(s))) as string[];
}

/** `command:` of each compose service (tracked by the two-space-indented service keys). */
function composeCommands(text: string): Map<string, string[]> {
  const commands = new Map<string, string[]>();
  let service: string | undefined;
  let inServices = false;
  for (const line of text.split('\n')) {
    if (/^\S/.test(line)) inServices = line.startsWith('services:');
    const key = /^ {2}([\w-]+):\s*$/.exec(line);
    if (inServices && key) service = key[1];
    const command = /^ {4}command: (\[.*\])\s*$/.exec(line);
    if (inServices && service && command) commands.set(service, flowList(command[1] as string));
  }
  return commands;
}

let commands: string[];
const dockerfile = read('docker/Dockerfile');
const compose = read('docker/compose.yaml');
const declaredEnv = new Set(OPTIONS.flatMap((o) => (o.env ? [o.env] : [])));

beforeAll(async () => {
  const help = await runPitr(['--help']);
  commands = [...help.stdout.matchAll(/^ {2}(\S+) {2,}/gm)].map((m) => m[1] as string);
  expect(commands).toContain('archive');
});

/** A pitr command line must name a real command and pass the real parser. */
function expectPitrCommand(argv: string[]): void {
  const [command, ...args] = argv;
  expect({ argv, known: commands.includes(command as string) }).toEqual({ argv, known: true });
  expect(() => parseArgs(command as string, args, {})).not.toThrow();
}

describe('docker/Dockerfile', () => {
  const steps = instructions(dockerfile);

  test('copies only files that exist, and the ignore file lets them through', () => {
    const ignore = read('docker/Dockerfile.dockerignore')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    const copies = steps.filter((s) => s.keyword === 'COPY' && !s.args.startsWith('--from'));
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) {
      const sources = copy.args.split(/\s+/).slice(0, -1);
      for (const source of sources) {
        expect({ source, exists: existsSync(path.join(ROOT, source)) }).toEqual({ source, exists: true });
        expect({ source, passes: ignore.includes(source) }).toEqual({ source, passes: true });
      }
    }
  });

  test('the runtime stage takes what the build stage made: dist/ from "npm ci" (prepare builds it)', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.prepare).toBe('npm run build');
    expect(pkg.scripts.build).toContain('tsconfig.build.json');
    expect((JSON.parse(read('tsconfig.json')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir).toBe('dist');
    expect(steps.some((s) => s.keyword === 'RUN' && s.args.startsWith('npm ci'))).toBe(true);
    const fromBuild = steps.filter((s) => s.args.startsWith('--from=build')).map((s) => s.args.split(/\s+/)[1]);
    expect(fromBuild).toEqual(['/app/package.json', '/app/node_modules', '/app/dist', '/app/bin']);
  });

  test('runs bin/pitr.js as a non-root user, with a real command by default', () => {
    expect(existsSync(path.join(ROOT, 'bin/pitr.js'))).toBe(true);
    const last = (keyword: string): string => [...steps].reverse().find((s) => s.keyword === keyword)?.args ?? '';
    expect(JSON.parse(last('ENTRYPOINT'))).toEqual(['node', '/app/bin/pitr.js']);
    expect(last('USER')).toBe('node');
    expect(steps.filter((s) => s.keyword === 'FROM').map((s) => s.args.split(' ')[0])).toEqual(['node:20-slim', 'node:20-slim']);
    expectPitrCommand(JSON.parse(last('CMD')) as string[]);
    for (const env of steps.filter((s) => s.keyword === 'ENV'))
      for (const name of [...env.args.matchAll(/(\w+)=/g)].map((m) => m[1] as string))
        expect({ name, known: declaredEnv.has(name) || name === 'NODE_ENV' }).toEqual({ name, known: true });
  });
});

describe('docker/compose.yaml', () => {
  test('builds the Dockerfile and runs real pitr commands with real flags', () => {
    expect(compose).toContain('build: { context: .., dockerfile: docker/Dockerfile }');
    const byService = composeCommands(compose);
    expect([...byService.keys()]).toEqual(['db', 'init', 'archiver', 'tools']);
    expect(byService.get('db')?.slice(0, 3)).toEqual(['postgres', '-c', 'wal_level=logical']);
    for (const [service, argv] of byService) if (service !== 'db') expectPitrCommand(argv);
    expect(byService.get('archiver')?.[0]).toBe('archive');
    expect(compose).toContain("entrypoint: ['node', '/app/bin/pitr.js']");
  });

  test("sets only variables pitr declares (or Google's and the postgres image's)", () => {
    const names = [...compose.matchAll(/^\s+#?\s*([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] as string);
    expect(names).toEqual(expect.arrayContaining(['PITR_SOURCE', 'PITR_REPO', 'GOOGLE_APPLICATION_CREDENTIALS']));
    for (const name of names) {
      const known = declaredEnv.has(name) || name === 'GOOGLE_APPLICATION_CREDENTIALS' || name.startsWith('POSTGRES_');
      expect({ name, known }).toEqual({ name, known: true });
    }
    // a gs:// repository is shown, as an alternative to the volume
    expect(compose).toMatch(/# PITR_REPO: gs:\/\/\S+/);
  });

  test('the health check asks the endpoint the archiver serves; documents it names exist', () => {
    expect(compose).toContain("fetch('http://127.0.0.1:9187/healthz')");
    expect(read('src/ops/metrics-server.ts')).toContain("case '/healthz'");
    for (const doc of [...`${compose}\n${dockerfile}`.matchAll(/docs\/[\w/-]+\.md/g)].map((m) => m[0]))
      expect({ doc, exists: existsSync(path.join(ROOT, doc)) }).toEqual({ doc, exists: true });
  });
});
