import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { OPTIONS } from '../src/config/options';
import { SHOP_SCHEMA_SQL } from '../src/demo/shop-database';
import { OPTIONS_BEGIN, OPTIONS_END, optionsMarkdown, optionsSection } from '../src/config/options-markdown';

const ROOT = path.resolve(__dirname, '..');
const read = (file: string): string => readFileSync(path.join(ROOT, file), 'utf8');

describe('README.md', () => {
  test('its configuration reference is the one generated from src/config/options.ts', () => {
    const section = optionsSection(read('README.md'));
    if (section === undefined) throw new Error(`README.md lost its ${OPTIONS_BEGIN} ... ${OPTIONS_END} markers`);
    const generated = optionsMarkdown();
    if (section !== generated) {
      const ours = section.split('\n');
      const theirs = generated.split('\n');
      const line = theirs.findIndex((l, i) => l !== ours[i]);
      throw new Error(
        'README.md\'s options reference is out of date: run "npm run docs:options" to regenerate it\n' +
          `first difference:\n  README:    ${ours[line] ?? '(nothing)'}\n  generated: ${theirs[line] ?? '(nothing)'}`,
      );
    }
  });

  test('the generated reference names every flag and environment variable', () => {
    const generated = optionsMarkdown();
    for (const option of OPTIONS) {
      expect(generated).toContain(`\`--${option.name}`);
      if (option.env) expect(generated).toContain(`\`${option.env}\``);
    }
  });

  test('shows the drill script exactly as shipped, in the README and in its runbook', () => {
    const script = read('docs/runbooks/monthly-drill.sh').trimEnd();
    expect(read('README.md')).toContain('```bash\n' + script + '\n```');
    expect(read('docs/runbooks/monthly-drill.md')).toContain('```bash\n' + script + '\n```');
  });

  test("the Quick start's shop (docs/shop-schema.sql) is the demo's shop", () => {
    expect(read('docs/shop-schema.sql')).toBe(
      '-- The shop of the README\'s Quick start and of "pitr demo" (src/demo/shop-database.ts): 3 tables, 200 rows.\n' + SHOP_SCHEMA_SQL,
    );
  });

  test('links only to files that exist', () => {
    for (const file of [
      'README.md',
      ...[
        'recover-deleted-rows',
        'point-in-time-side-database',
        'monthly-drill',
        'slot-invalidated',
        'replaced-or-promoted-source',
        'second-writer',
        'different-content',
        'failover-to-standby',
      ].map((r) => `docs/runbooks/${r}.md`),
    ]) {
      for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target as string)) continue;
        const resolved = path.join(ROOT, path.dirname(file), target as string);
        expect({ file, target, exists: existsSync(resolved) }).toEqual({ file, target, exists: true });
      }
    }
  });
});
