#!/usr/bin/env node
// Snapshot tests of the TextMate grammar over the repository's examples
// (examples/*.gw): every token of every example and the scopes it gets, as
// vscode-tmgrammar-snap writes them, compared with test/snapshots/*.snap.
//
// vscode-tmgrammar-snap keeps a snapshot beside its input, so the examples are
// copied into a temporary directory with their snapshots, and the snapshots
// are copied back with --update. A changed example or grammar shows up as a
// reviewed diff of test/snapshots/: `npm run test:snap:update`.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const update = process.argv.includes('--update');
const here = __dirname;
const extension = path.dirname(here);
const examples = path.resolve(extension, '..', '..', 'examples');
const snapshots = path.join(here, 'snapshots');

const inputs = fs.readdirSync(examples).filter((f) => f.endsWith('.gw')).sort();
if (inputs.length === 0) {
  console.error(`no .gw files in ${examples}`);
  process.exit(1);
}
fs.mkdirSync(snapshots, { recursive: true });

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-tm-snap-'));
let failed = false;
try {
  for (const input of inputs) {
    fs.copyFileSync(path.join(examples, input), path.join(work, input));
    const snap = path.join(snapshots, `${input}.snap`);
    if (fs.existsSync(snap)) {
      fs.copyFileSync(snap, path.join(work, `${input}.snap`));
    } else if (!update) {
      console.error(`✖ no snapshot for examples/${input}: run \`npm run test:snap:update\` and review it`);
      failed = true;
    }
  }
  for (const snap of fs.readdirSync(snapshots)) {
    if (!inputs.includes(snap.replace(/\.snap$/, ''))) {
      if (update) {
        fs.unlinkSync(path.join(snapshots, snap));
      } else {
        console.error(`✖ test/snapshots/${snap} has no example: run \`npm run test:snap:update\``);
        failed = true;
      }
    }
  }
  const bin = path.join(extension, 'node_modules', '.bin', 'vscode-tmgrammar-snap');
  const args = [
    '--config', path.join(extension, 'package.json'),
    '--grammar', path.join(extension, 'syntaxes', 'gw.tmLanguage.json'),
    ...(update ? ['--updateSnapshot'] : []),
    path.join(work, '*.gw'),
  ];
  const run = spawnSync(bin, args, { cwd: extension, stdio: 'inherit' });
  if (run.status !== 0) {
    console.error('✖ the TextMate grammar scopes the examples differently from test/snapshots/ ' +
      '(if the change is intended: `npm run test:snap:update`, then review the diff)');
    failed = true;
  }
  if (update) {
    for (const input of inputs) {
      fs.copyFileSync(path.join(work, `${input}.snap`), path.join(snapshots, `${input}.snap`));
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
