#!/usr/bin/env node
'use strict';
/**
 * Rewrites README.md's configuration reference from the option declarations (src/config/options.ts,
 * built into dist/). Run it through "npm run docs:options", which builds first.
 */
const fs = require('node:fs');
const path = require('node:path');
const { withOptionsSection } = require('../dist/config/options-markdown.js');

const file = path.join(__dirname, '..', 'README.md');
const before = fs.readFileSync(file, 'utf8');
const after = withOptionsSection(before);
if (after !== before) fs.writeFileSync(file, after);
process.stdout.write(after === before ? 'README.md: options reference already up to date\n' : 'README.md: options reference rewritten\n');
