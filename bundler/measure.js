#!/usr/bin/env node
'use strict';
/**
 * Measures the `react-native bundle` CLI against server.js on examples/hello-rn
 * (platform ios, dev false, minify true) and prints a table.
 *
 *   node bundler/measure.js [--runs 5] [--skip-cli] [--keep]
 *
 * Every run uses fresh temporary cache directories, so "cold" really is cold
 * (each cold build takes ~15 s on 2 cores; the whole script ~1.5 min).
 *
 * CLI rows: cold = empty cache; warm = the same sources again; warm edited =
 * a copy with one file edited, at the same depth (what a new preview is).
 * Server rows: start-up = spawn to first answer; cold = first build with an
 * empty cache; warm edited = one file edited in the same appDir; warm new
 * appDir = edited sources in an appDir never used before; restarted = first
 * build of a new process on the warm cache (what recycling costs).
 * Times are wall-clock ms seen by the caller; for the server, its own
 * durationMs is shown too. Peak RSS is the process's high-water mark.
 */
const {spawnSync} = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

// `node -r bundler/measure.js <cli>`: report the CLI process's peak RSS.
if (require.main !== module) {
  const target = process.env.HIVESYNC_MEASURE_RSS_FILE;
  if (target) {
    process.on('exit', () => {
      fs.writeFileSync(target, String(process.resourceUsage().maxRSS * 1024));
    });
  }
  return;
}

const {BundlerClient} = require('./client.js');

const BUNDLER = __dirname;
const EXAMPLE = path.resolve(BUNDLER, '..', 'examples', 'hello-rn');
const EDITED_FILE = path.join('src', 'components', 'Header.js');

function parseArgs(argv) {
  const options = {runs: 5, skipCli: false, keep: false};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') options.runs = Number(argv[++i]);
    else if (argv[i] === '--skip-cli') options.skipCli = true;
    else if (argv[i] === '--keep') options.keep = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return options;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : Math.round((sorted[mid - 1] + sorted[mid]) / 2);
};
const mb = (bytes) => (bytes == null ? '-' : `${Math.round(bytes / 1048576)} MB`);
const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function copyApp(destination, marker) {
  fs.rmSync(destination, {recursive: true, force: true});
  fs.cpSync(EXAMPLE, destination, {recursive: true});
  if (marker) {
    const file = path.join(destination, EDITED_FILE);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('{title}', `{title} ${marker}`));
  }
  return destination;
}

function runCli(appDir, cacheDir, outDir) {
  const rssFile = path.join(outDir, 'rss');
  fs.mkdirSync(outDir, {recursive: true});
  const started = process.hrtime.bigint();
  const result = spawnSync(
    process.execPath,
    [
      '-r',
      __filename,
      path.join(BUNDLER, 'node_modules', 'react-native', 'cli.js'),
      'bundle',
      '--config',
      path.join(BUNDLER, 'metro.config.js'),
      '--entry-file',
      path.join(appDir, 'index.js'),
      '--platform',
      'ios',
      '--dev',
      'false',
      '--minify',
      'true',
      '--bundle-output',
      path.join(outDir, 'bundle.js'),
      '--assets-dest',
      path.join(outDir, 'assets'),
    ],
    {
      cwd: BUNDLER,
      env: {...process.env, HIVESYNC_APP_DIR: appDir, HIVESYNC_CACHE_DIR: cacheDir, HIVESYNC_MEASURE_RSS_FILE: rssFile},
      encoding: 'utf8',
    },
  );
  const ms = Number((process.hrtime.bigint() - started) / 1000000n);
  if (result.status !== 0) {
    throw new Error(`react-native bundle failed (${result.status}):\n${result.stderr}\n${result.stdout}`);
  }
  return {ms, rss: Number(fs.readFileSync(rssFile, 'utf8')), bundle: path.join(outDir, 'bundle.js')};
}

async function timedBuild(client, fields) {
  const started = process.hrtime.bigint();
  const response = await client.build({platform: 'ios', dev: false, minify: true, ...fields});
  const ms = Number((process.hrtime.bigint() - started) / 1000000n);
  if (!response.ok) {
    throw new Error(`build failed: ${JSON.stringify(response.error)}`);
  }
  return {ms, durationMs: response.durationMs, response};
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'hivesync-measure-'));
  const rows = [];
  const row = (name, walls, durations, rss, note = '') =>
    rows.push({name, median: median(walls), min: Math.min(...walls), max: Math.max(...walls), n: walls.length, server: durations ? median(durations) : null, rss, note});
  let cliBundle = null;

  if (!options.skipCli) {
    const cache = path.join(root, 'cli-cache');
    const apps = path.join(root, 'cli-apps');
    process.stderr.write('CLI cold...\n');
    const appDir = copyApp(path.join(apps, 'hello-rn'));
    const cold = runCli(appDir, cache, path.join(root, 'cli-out', 'cold'));
    cliBundle = cold.bundle;
    row('react-native bundle: cold (empty cache)', [cold.ms], null, cold.rss);
    process.stderr.write('CLI warm...\n');
    const warm = [];
    for (let i = 0; i < options.runs; i++) {
      warm.push(runCli(appDir, cache, path.join(root, 'cli-out', `warm-${i}`)));
    }
    row('react-native bundle: warm, same sources', warm.map((r) => r.ms), null, Math.max(...warm.map((r) => r.rss)));
    const edited = [];
    for (let i = 0; i < options.runs; i++) {
      const copy = copyApp(path.join(apps, `edit-${i}`), `cli-edit-${i}`);
      edited.push(runCli(copy, cache, path.join(root, 'cli-out', `edit-${i}`)));
    }
    row('react-native bundle: warm, one file edited', edited.map((r) => r.ms), null, Math.max(...edited.map((r) => r.rss)));
  }

  const workspace = path.join(root, 'server-workspace');
  const cache = path.join(root, 'server-cache');
  const out = (name) => ({bundleOut: path.join(root, 'server-out', name, 'bundle.js'), assetsDir: path.join(root, 'server-out', name, 'assets')});
  fs.mkdirSync(path.join(workspace, 'apps'), {recursive: true});
  const stderr = path.join(root, 'server.stderr');

  process.stderr.write('server cold...\n');
  let started = process.hrtime.bigint();
  let client = new BundlerClient({workspace, cacheDir: cache, stderr});
  await client.ping();
  const startup = Number((process.hrtime.bigint() - started) / 1000000n);
  row('server: start-up (spawn to first answer)', [startup], null, client.peakRssBytes());
  const slot = path.join(workspace, 'apps', 'slot-0');
  copyApp(slot);
  const cold = await timedBuild(client, {appDir: slot, ...out('cold')});
  row('server: cold first build (empty cache)', [cold.ms], [cold.durationMs], client.peakRssBytes());
  const identical = cliBundle ? sha256(cliBundle) === sha256(out('cold').bundleOut) : null;

  process.stderr.write('server warm...\n');
  const editedSame = [];
  for (let i = 0; i < options.runs; i++) {
    copyApp(slot, `server-edit-${i}`);
    editedSame.push(await timedBuild(client, {appDir: slot, ...out(`edit-${i}`)}));
  }
  row('server: warm, one file edited, same appDir', editedSame.map((r) => r.ms), editedSame.map((r) => r.durationMs), client.peakRssBytes());
  const editedNew = [];
  for (let i = 0; i < options.runs; i++) {
    const appDir = copyApp(path.join(workspace, 'apps', `new-${i}`), `server-new-${i}`);
    editedNew.push(await timedBuild(client, {appDir, ...out(`new-${i}`)}));
  }
  row('server: warm, edited app in a new appDir', editedNew.map((r) => r.ms), editedNew.map((r) => r.durationMs), client.peakRssBytes());
  const android = [];
  for (let i = 0; i < options.runs; i++) {
    const appDir = copyApp(path.join(workspace, 'apps', `android-${i}`), `server-android-${i}`);
    android.push(await timedBuild(client, {appDir, platform: 'android', ...out(`android-${i}`)}));
  }
  row('server: warm, new appDir, android (1st is cold)', android.map((r) => r.ms), android.map((r) => r.durationMs), client.peakRssBytes());
  const peakFirst = client.peakRssBytes();
  await client.close();

  process.stderr.write('server restarted on the warm cache...\n');
  started = process.hrtime.bigint();
  client = new BundlerClient({workspace, cacheDir: cache, stderr});
  await client.ping();
  const restartStartup = Number((process.hrtime.bigint() - started) / 1000000n);
  const appDir = copyApp(path.join(workspace, 'apps', 'after-restart'), 'after-restart');
  const restarted = await timedBuild(client, {appDir, ...out('restarted')});
  row('server: restarted, warm cache, first build', [restarted.ms], [restarted.durationMs], client.peakRssBytes(), `(+${restartStartup} ms start-up)`);
  await client.close();

  const header = ['', 'median ms', 'min', 'max', 'n', 'server durationMs', 'peak RSS'];
  const lines = rows.map((r) => [r.name + (r.note ? ` ${r.note}` : ''), r.median, r.min, r.max, r.n, r.server ?? '', mb(r.rss)]);
  const widths = header.map((h, i) => Math.max(String(h).length, ...lines.map((l) => String(l[i]).length)));
  const format = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  console.log(`\nexamples/hello-rn, ios, dev=false, minify=true; ${os.cpus().length} CPUs, node ${process.version}`);
  console.log(format(header));
  for (const line of lines) console.log(format(line));
  console.log(`\nserver peak RSS (first process): ${mb(peakFirst)}`);
  if (identical !== null) {
    console.log(`server bundle byte-identical to the CLI's: ${identical ? 'yes' : 'NO'}`);
  }
  if (!options.keep) {
    fs.rmSync(root, {recursive: true, force: true});
  } else {
    console.log(`files kept in ${root}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
