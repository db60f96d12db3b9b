#!/usr/bin/env node
'use strict';
/**
 * HiveSync's long-lived React Native bundler.
 *
 *   node bundler/server.js --workspace <ABS DIR> --cache-dir <ABS DIR>
 *
 * Newline-delimited JSON requests on stdin, one JSON response line per request on
 * stdout, in order; everything else goes to stderr. See README.md for the
 * protocol and the directory layout rules.
 *
 * Design: one Metro server (projectRoot = the workspace) lives as long as the
 * process, so Metro's dependency graph machinery, the resolution of node_modules
 * and the transform results (in memory, backed by a FileStore in --cache-dir)
 * are reused by every build. Metro's file watcher is replaced: nothing watches
 * the disk. Before each build the app directory is dropped from Metro's file map
 * and crawled again (a "recrawl" fed to metro-file-map), and the build starts
 * only once the file map has published the crawl; after the build the
 * directory is dropped again. The file map therefore holds exactly the files on
 * disk when the request was handled, and transform cache keys use the SHA-1 of
 * the content read then: a reused directory can never give a stale bundle,
 * whatever the files' mtimes.
 *
 * This file only puts the parts in ./server/ together, in an order that
 * matters (README.md, "Code layout"): V8 flags first, stdout redirected before
 * anything can print, arguments checked before Metro is loaded, Metro patched
 * before its Server module is loaded and created.
 */

// A build allocates many objects that live for the whole build (its graph).
// With V8's small initial young generation they get promoted and collected as
// old objects: a warm build took ~65 ms instead of ~22 ms. Must run before the
// heap grows.
require('v8').setFlagsFromString('--min-semi-space-size=16');

const path = require('path');

// From here on, stdout carries the protocol only.
const {log} = require('./server/stdio');
const {USAGE, parseArgs} = require('./server/options');
const {prepareLayout} = require('./server/layout');

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  log(`${USAGE}\n${error.message}`);
  process.exit(2);
}

const layout = prepareLayout(options);

// Patch Metro's internals before its Server is loaded (./server/metro.js) and
// created (MetroServer#start). Loading these modules also checks that every
// Metro internal they use exists: a Metro upgrade fails here, not in a build.
const {applyMetroPatches} = require('./server/metroPatches');
applyMetroPatches(layout);
const {MetroServer} = require('./server/metro');
const {startRequestLoop} = require('./server/requestLoop');

const metro = new MetroServer(options, layout);
if (metro.isBlocked(path.join(layout.appsDir, 'slot', 'index.js'))) {
  log(`the workspace ${layout.workspace} lies in a path Metro ignores (resolver.blockList); choose another`);
  process.exit(2);
}

// Turns on --expose-gc, starts Metro and answers requests until stdin closes.
startRequestLoop(metro);
