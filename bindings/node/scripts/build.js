#!/usr/bin/env node
// Builds build/lmcore.node with CMake against the Node headers of the running node
// (<prefix>/include/node); nothing is downloaded. `npm install` runs it.
// LMCORE_NODE_SANITIZE=1 builds an ASan+UBSan addon into build-asan/ instead.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const candidates = [
  process.env.NODE_INCLUDE_DIR,
  path.resolve(process.execPath, '../../include/node'),
  '/usr/include/node',
  '/usr/local/include/node',
].filter(Boolean);
const include = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
if (!include) {
  console.error(`lmcore: no node_api.h in ${candidates.join(', ')} (install the Node.js headers, or set NODE_INCLUDE_DIR)`);
  process.exit(1);
}
const sanitize = process.env.LMCORE_NODE_SANITIZE === '1';
const buildDir = path.join(root, sanitize ? 'build-asan' : 'build');
const jobs = process.env.LMCORE_JOBS || '2';
const configure = ['-S', root, '-B', buildDir, `-DNODE_INCLUDE_DIR=${include}`];
if (sanitize) configure.push('-DLMCORE_SANITIZE=ON', '-DCMAKE_BUILD_TYPE=RelWithDebInfo');
try {
  execFileSync('cmake', configure, { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('cmake', ['--build', buildDir, '-j', jobs], { stdio: 'inherit' });
} catch (err) {
  console.error(`lmcore: building the addon failed (${err.message})`);
  process.exit(1);
}
