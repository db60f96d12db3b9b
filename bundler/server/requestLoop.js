'use strict';
/**
 * The request loop: one JSON request per stdin line, handled one at a time in
 * arrival order (a promise queue that starts with Metro's start-up), one answer
 * line each on stdout. Also the state shared by requests (the builds counter,
 * garbage collection between requests) and leaving: when stdin closes (after
 * answering what was asked) and when the parent process dies.
 */
const fs = require('fs');
const path = require('path');
const readline = require('readline');

const {handleBuild} = require('./build');
const {RequestError, describeError} = require('./errors');
const {log, writeProtocol} = require('./stdio');

let builds = 0;

// V8 lets the heap grow far beyond what is live before it collects (after a
// cold build it allows hundreds of MB): RSS would swing up to ~800 MB while
// ~50 MB is live. Collect after a build when the heap has grown well past
// what was live after the last collection. Runs after the answer is written.
let collectGarbage = null; // set by startRequestLoop(), which turns on --expose-gc
let liveHeapBytes = 0;
function collectGarbageIfGrown() {
  const {heapUsed} = process.memoryUsage();
  if (heapUsed > liveHeapBytes * 1.5 + 64 * 1024 * 1024) {
    collectGarbage();
    liveHeapBytes = process.memoryUsage().heapUsed;
  }
}

/** The answer to one request line (never throws). */
async function handle(metro, line) {
  const started = Date.now();
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    return failure(metro, null, new RequestError(`not JSON: ${error.message}`), started, null);
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    return failure(metro, null, new RequestError('a request is a JSON object'), started, null);
  }
  const id = request.id ?? null;
  try {
    if (request.type === 'ping') {
      if (request.gc === true) {
        collectGarbage(); // diagnostics only
        liveHeapBytes = process.memoryUsage().heapUsed;
      }
      const response = {id, ok: true, rssBytes: process.memoryUsage.rss(), builds};
      if (request.memory === true) {
        const usage = process.memoryUsage();
        const {memoryStore} = metro;
        response.memory = {
          heapUsed: usage.heapUsed,
          heapTotal: usage.heapTotal,
          external: usage.external,
          memoryCacheBytes: memoryStore ? memoryStore.bytes : 0,
          memoryCacheEntries: memoryStore ? memoryStore.entries.size : 0,
        };
      }
      return response;
    }
    if (request.type === 'build') {
      builds += 1; // every build request counts, failed or not
      return await handleBuild(metro, request, started, builds);
    }
    throw new RequestError(`unknown request type ${JSON.stringify(request.type)}`);
  } catch (error) {
    let appDir = null;
    if (typeof request.appDir === 'string' && path.isAbsolute(request.appDir)) {
      appDir = path.normalize(request.appDir).replace(/[\\/]+$/, '');
      try {
        appDir = fs.realpathSync(appDir);
      } catch {}
    }
    if (!(error instanceof RequestError) && !error?.hivesyncType && error?.type == null) {
      log(`build ${JSON.stringify(id)} failed: ${error?.stack ?? error}`);
    }
    return failure(metro, id, error, started, appDir);
  }
}

function failure(metro, id, error, started, appDir) {
  return {
    id,
    ok: false,
    error: describeError(error, appDir, metro.layout),
    durationMs: Date.now() - started,
    rssBytes: process.memoryUsage.rss(),
  };
}

function respond(response) {
  writeProtocol(JSON.stringify(response) + '\n');
}

/** Starts Metro (exit 1 if it cannot start) and answers stdin's requests until stdin closes. */
function startRequestLoop(metro) {
  require('v8').setFlagsFromString('--expose-gc');
  collectGarbage = require('vm').runInNewContext('gc');

  let queue = metro.start().catch((error) => {
    log(`Metro failed to start: ${error?.stack ?? error}`);
    process.exit(1);
  });

  const input = readline.createInterface({input: process.stdin, crlfDelay: Infinity, terminal: false});
  input.on('line', (line) => {
    if (line.trim() === '') {
      return;
    }
    queue = queue.then(async () => {
      respond(await handle(metro, line));
      collectGarbageIfGrown();
    });
  });
  input.on('close', () => {
    // Answer what was already asked, then leave.
    queue.then(async () => {
      if (metro.running) {
        await Promise.race([metro.running.server.end(), new Promise((resolve) => setTimeout(resolve, 2000))]);
      }
      process.exit(0);
    });
  });

  // The parent (a Python worker) may die without closing stdin cleanly (SIGKILL,
  // OOM killer): then this process is re-parented and must not go on bundling for
  // nobody. Checked between event-loop turns, so at most one transform late.
  const PARENT_PID = process.ppid;
  setInterval(() => {
    if (process.ppid !== PARENT_PID) {
      log(`parent ${PARENT_PID} is gone; exiting`);
      process.kill(process.pid, 'SIGKILL');
    }
  }, 250).unref();

  // SIGTERM/SIGINT keep their default action: immediate termination, even in the
  // middle of a long synchronous transform (a JS handler would wait for it).
  // Nothing needs cleaning up: outputs are written to temporary names and renamed.
  process.on('unhandledRejection', (reason) => {
    log(`unhandled rejection: ${reason?.stack ?? reason}`);
  });
}

module.exports = {startRequestLoop};
