import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PITR_BIN } from '../src/demo/pitr-cli';
import { runPitr } from './harness/pitr-process';

jest.setTimeout(120_000);

/** The temporary directory the demo announces (it must be gone afterwards). */
function demoDir(stdout: string): string {
  const match = /(\/\S*pitr-demo-[A-Za-z0-9]+)\//.exec(stdout);
  if (!match) throw new Error(`no demo directory in:\n${stdout}`);
  return match[1] as string;
}

describe('pitr demo', () => {
  test('runs the whole rehearsal end to end and removes everything', async () => {
    const result = await runPitr(['demo'], {}, 110_000);
    if (result.code !== 0) throw new Error(`exit ${result.code}\n${result.stdout}\n${result.stderr}`);
    const out = result.stdout;
    const lines = out.split('\n');
    // every step shows the command a user would type, and its real output beneath it
    expect(out).toMatch(/^1\. Find the PostgreSQL server programs\n {3}PostgreSQL \d+\.\S+.* in \S+ \(found through .+\)$/m);
    if (process.getuid?.() === 0) expect(out).toContain('running as root: initdb, pg_ctl and postgres run as the "postgres" user (runuser -u postgres --)');
    expect(out).toMatch(/^ {3}\$ export PGPASSWORD=\S+$/m);
    expect(out).toMatch(/^ {3}\$ pitr init --source postgresql:\/\/postgres@127\.0\.0\.1:\d+\/shop --repo \S+\/repo$/m);
    expect(out).toMatch(/^ {7}created {2}replication slot pitr$/m);
    expect(out).toMatch(/^ {3}\$ pitr archive --source \S+ --repo \S+ {3}# its JSON log goes to \S+$/m);
    expect(out).toMatch(/^ {3}archiver streaming \(pid \d+\)/m);
    expect(out).toMatch(/^ {5}backup \S+ complete: aligned at [0-9A-F]+\/[0-9A-F]+, 3 tables, \d+ rows/m);
    expect(out).toContain(`$ psql postgresql://`);
    expect(out).toMatch(/-c "DELETE FROM orders WHERE status = 'shipped'" {3}# meant: status = 'cancelled'$/m);
    const deleted = /^ {3}(\d+) orders deleted, and their (\d+) order_items with them \(ON DELETE CASCADE\), in transaction (\d+)$/m.exec(out);
    expect(deleted).not.toBeNull();
    const [, orders, items, xid] = deleted as RegExpExecArray;
    expect(Number(orders)).toBeGreaterThan(0);
    expect(out).toMatch(/^ {5}PITR OK - archive is healthy$/m);
    expect(out).toMatch(/^ {3}\$ pitr log --repo \S+ --op delete --table public\.orders$/m);
    expect(out).toContain(`  xid ${xid}  `);
    expect(out).toContain(`public.orders: delete ${orders}; public.order_items: delete ${items}`);
    expect(out).toMatch(
      new RegExp(
        `^ {3}\\$ pitr restore --repo \\S+ --target postgresql://postgres@127\\.0\\.0\\.1:\\d+/shop_before_delete --to xid:${xid} --exclusive --tables public\\.customers,public\\.orders,public\\.order_items$`,
        'm',
      ),
    );
    expect(out).toMatch(/^ {5}restored "shop_before_delete" to commit \S+ \(exclusive: just before it\)/m);
    // the restored tables equal the source just before the delete, row for row
    expect(lines.filter((l) => /^ {3}public\.(orders|order_items) +\d+ +\d+ +\d+ +yes, every row$/.test(l))).toHaveLength(2);
    expect(out).toContain(`the ${orders} deleted orders are in shop again, exactly as before the delete: yes`);
    expect(out).toContain('archiver exited with status 0');
    expect(out).toMatch(/^removed \S+ and stopped its PostgreSQL$/m);
    expect(out).toMatch(/^demo complete: /m);
    expect(existsSync(demoDir(out))).toBe(false);
  });

  test('Ctrl-C stops the cluster and removes its files', async () => {
    const child = spawn(process.execPath, [PITR_BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        // interrupt once the archiver runs: a cluster, a repository and a child process to clean up
        if (/archiver streaming/.test(stdout)) resolve();
      });
      void exited.then(() => resolve());
    });
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stdout).toMatch(/^interrupted$/m);
    expect(existsSync(demoDir(stdout))).toBe(false);
  });

  test('without PostgreSQL server programs it says how to install them and exits 8', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'pitr-no-pg-'));
    try {
      // PATH restricted to an empty directory, and the search list pointed there too
      const result = await runPitr(['demo'], { PATH: empty, PITR_PG_BIN: empty });
      expect(result.code).toBe(8);
      expect(result.stderr).toBe(
        `pitr: error: no postgresql server programs (initdb, pg_ctl, postgres) found in ${empty}\n` +
          'hint: install the PostgreSQL server programs (initdb, pg_ctl, postgres): Debian/Ubuntu: sudo apt-get install postgresql; ' +
          'macOS: brew install postgresql@16; or point --pg-bin (PITR_PG_BIN) at the directory holding them\n',
      );
      expect(result.stdout).toContain('1. Find the PostgreSQL server programs');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
