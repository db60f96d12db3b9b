#!/usr/bin/env node
'use strict';
/**
 * End-to-end checks of server.js on examples/hello-rn:
 *
 *   node bundler/selfcheck.js [--cache-dir DIR] [--fresh-cache] [--max-workers N] [--builds N]
 *                             [--tmp-dir DIR]
 *
 * Uses a temporary workspace, made in --tmp-dir (default $TMPDIR) as
 * <tmp dir>/hivesync-selfcheck-XXXXXX/workspace; the transform cache defaults to
 * $TMPDIR/hivesync-bundler-selfcheck-cache (kept between runs: the first run
 * is a cold build, ~15 s). Metro's transform cache keys hold each node_modules
 * file's path relative to the workspace, so a cache is warm only for
 * workspaces as deep below / as the ones that filled it: --tmp-dir lets a
 * caller put this workspace at the depth of its own. Exits 1 if any check fails.
 */
const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {BundlerClient} = require('./client.js');

const EXAMPLE = path.resolve(__dirname, '..', 'examples', 'hello-rn');

function parseArgs(argv) {
  const options = {
    cacheDir: path.join(os.tmpdir(), 'hivesync-bundler-selfcheck-cache'),
    freshCache: false,
    maxWorkers: 1,
    builds: 50,
    tmpDir: os.tmpdir(),
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cache-dir') options.cacheDir = path.resolve(argv[++i]);
    else if (argv[i] === '--fresh-cache') options.freshCache = true;
    else if (argv[i] === '--max-workers') options.maxWorkers = Number(argv[++i]);
    else if (argv[i] === '--builds') options.builds = Number(argv[++i]);
    else if (argv[i] === '--tmp-dir') options.tmpDir = path.resolve(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const root = fs.mkdtempSync(path.join(options.tmpDir, 'hivesync-selfcheck-'));
const workspace = path.join(root, 'workspace');
const outDir = path.join(root, 'out');
if (options.freshCache) {
  options.cacheDir = path.join(root, 'cache');
}

let failures = 0;
let passes = 0;
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passes += 1;
    console.log(`PASS ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures += 1;
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
  }
}

function slot(name) {
  const dir = path.join(workspace, 'apps', name);
  fs.rmSync(dir, {recursive: true, force: true});
  fs.cpSync(EXAMPLE, dir, {recursive: true});
  return dir;
}

function outputs(name) {
  return {bundleOut: path.join(outDir, name, 'bundle.js'), assetsDir: path.join(outDir, name, 'assets')};
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A valid RGBA PNG of size x size pixels. */
function makePng(size) {
  const zlib = require('zlib');
  const crcTable = Array.from({length: 256}, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buffer) => {
    let c = 0xffffffff;
    for (const byte of buffer) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < size; y++) {
    rows.push(Buffer.from([0]), Buffer.alloc(size * 4, y % 2 ? 0x80 : 0xff));
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function expectOk(response) {
  assert.strictEqual(response.ok, true, `build failed: ${JSON.stringify(response.error)}`);
  for (const field of ['bundleBytes', 'durationMs', 'rssBytes', 'builds']) {
    assert.ok(Number.isInteger(response[field]) && response[field] >= 0, `${field} missing in ${JSON.stringify(response)}`);
  }
  assert.ok(Array.isArray(response.assets));
  return response;
}

function expectError(response, type) {
  assert.strictEqual(response.ok, false, `expected a ${type} error, got success`);
  assert.strictEqual(response.error.type, type, `expected ${type}, got ${JSON.stringify(response.error)}`);
  for (const field of ['message', 'file', 'line', 'column']) {
    assert.ok(field in response.error, `error.${field} missing`);
  }
  assert.ok(Number.isInteger(response.durationMs) && Number.isInteger(response.rssBytes));
  return response.error;
}

async function main() {
  fs.mkdirSync(path.join(workspace, 'apps'), {recursive: true});
  console.log(`workspace ${workspace}\ncache ${options.cacheDir}`);
  const client = new BundlerClient({
    workspace,
    cacheDir: options.cacheDir,
    args: ['--max-workers', String(options.maxWorkers)],
    stderr: path.join(root, 'server.stderr'),
  });

  await check('ping answers with rssBytes and builds', async () => {
    const pong = await client.ping();
    assert.strictEqual(pong.ok, true);
    assert.ok(pong.rssBytes > 0);
    assert.strictEqual(pong.builds, 0);
  });

  const logo = path.join(EXAMPLE, 'assets', 'logo.png');
  for (const platform of ['ios', 'android']) {
    await check(`${platform} build of examples/hello-rn: app code, .tsx, JSON and the PNG asset`, async () => {
      const appDir = slot(`hello-${platform}`);
      const out = outputs(`hello-${platform}`);
      const response = expectOk(await client.build({appDir, platform, ...out}));
      const code = fs.readFileSync(out.bundleOut, 'utf8');
      assert.strictEqual(Buffer.byteLength(code), response.bundleBytes);
      for (const text of [
        'Greetings from TypeScript', // src/components/Greeting.tsx
        'tasks done', // src/utils/tasks.ts
        'Bees counted', // src/components/Counter.js
        'Sketch the honeycomb layout', // data.json
        'HelloRN', // app.json, AppRegistry.registerComponent
        'Built by the HiveSync preview bundler', // App.js
      ]) {
        assert.ok(code.includes(text), `bundle lacks ${JSON.stringify(text)}`);
      }
      const expected = platform === 'ios' ? ['assets/assets/logo.png'] : ['drawable-mdpi/assets_logo.png', 'raw/keep.xml'];
      assert.deepStrictEqual(response.assets, expected);
      const copied = path.join(out.assetsDir, expected[0]);
      assert.strictEqual(sha256(copied), sha256(logo), 'copied PNG differs from the source');
      assert.ok(code.includes(platform === 'ios' ? '"/assets/assets"' : '"/assets/assets"'), 'asset URL is not app-relative');
    });
  }

  await check('the same sources in another slot give the same bundle bytes', async () => {
    const appDir = slot('another-slot');
    const out = outputs('another-slot');
    expectOk(await client.build({appDir, platform: 'ios', ...out}));
    assert.strictEqual(sha256(out.bundleOut), sha256(outputs('hello-ios').bundleOut));
  });

  await check('reused appDir, 20 edits (code, new/removed module, PNG) built immediately: never a stale bundle', async () => {
    const appDir = slot('reused');
    const header = path.join(appDir, 'src', 'components', 'Header.js');
    const original = fs.readFileSync(header, 'utf8');
    const out = outputs('reused');
    let previous = null;
    for (let i = 0; i < 20; i++) {
      const marker = `edit-${String(i).padStart(3, '0')}`; // same length every time
      const before = fs.statSync(header);
      fs.writeFileSync(header, original.replace('{title}', `{title} ${marker}`));
      if (i % 2 === 1) {
        // Same size and the same mtime as the previous version: only the content differs.
        fs.utimesSync(header, before.atime, before.mtime);
      }
      // Every 5th edit also adds a module, every other 5th removes it again.
      const extra = path.join(appDir, 'src', 'Extra.js');
      if (i % 5 === 0) {
        fs.writeFileSync(extra, `export default 'extra-module-${i}';\n`);
        fs.appendFileSync(header, `\nimport extra from '../Extra';\nexport const extraValue = extra;\n`);
      }
      // Every 4th edit also replaces the PNG (same name, other bytes).
      const png = path.join(appDir, 'assets', 'logo.png');
      if (i % 4 === 2) {
        fs.writeFileSync(png, makePng(8 + i));
      }
      const platform = i % 3 === 0 ? 'android' : 'ios';
      const response = expectOk(await client.build({appDir, platform, ...out}));
      const code = fs.readFileSync(out.bundleOut, 'utf8');
      assert.ok(code.includes(marker), `build ${i}: bundle lacks ${marker}`);
      const pngHash = crypto.createHash('md5').update(fs.readFileSync(png)).digest('hex');
      assert.ok(code.includes(`hash:"${pngHash}"`), `build ${i}: bundle has a stale asset hash`);
      assert.strictEqual(sha256(path.join(out.assetsDir, response.assets[0])), sha256(png), `build ${i}: stale asset copied`);
      if (previous) {
        assert.ok(!code.includes(previous), `build ${i}: bundle still has ${previous}`);
      }
      assert.strictEqual(code.includes(`extra-module-${i}`), i % 5 === 0, `build ${i}: Extra.js presence wrong`);
      if (i % 5 === 0) {
        fs.rmSync(extra);
      }
      previous = marker;
      assert.ok(response.durationMs < 5000);
    }
  });

  await check('syntax error in src/Foo.js: type, file, line and column', async () => {
    const appDir = slot('syntax');
    fs.writeFileSync(
      path.join(appDir, 'src', 'Foo.js'),
      "import React from 'react';\n\nexport function Foo() {\n  const value = 1 +;\n  return value;\n}\n",
    );
    fs.appendFileSync(path.join(appDir, 'App.js'), "\nexport {Foo} from './src/Foo';\n");
    const error = expectError(await client.build({appDir, platform: 'ios', ...outputs('syntax')}), 'syntax');
    assert.strictEqual(error.file, 'src/Foo.js');
    assert.strictEqual(error.line, 4);
    assert.strictEqual(error.column, 20); // 1-based: the ";" after "1 +"
    assert.ok(error.message.includes('src/Foo.js'), error.message);
    assert.ok(!error.message.includes(workspace), 'message leaks server paths');
  });

  await check('syntax error in a .tsx file', async () => {
    const appDir = slot('syntax-tsx');
    fs.writeFileSync(
      path.join(appDir, 'src', 'components', 'Greeting.tsx'),
      "import React from 'react';\nimport {Text} from 'react-native';\n\nexport default function Greeting(): React.JSX.Element {\n  return <Text>hi</Txt>;\n}\n",
    );
    const error = expectError(await client.build({appDir, platform: 'android', ...outputs('syntax-tsx')}), 'syntax');
    assert.strictEqual(error.file, 'src/components/Greeting.tsx');
    assert.strictEqual(error.line, 5);
  });

  await check('invalid JSON is a syntax error at its position', async () => {
    const appDir = slot('syntax-json');
    fs.writeFileSync(path.join(appDir, 'data.json'), '{\n  "title": "x",\n  "tasks": [}\n');
    const error = expectError(await client.build({appDir, platform: 'ios', ...outputs('syntax-json')}), 'syntax');
    assert.strictEqual(error.file, 'data.json');
    assert.strictEqual(error.line, 3);
    assert.strictEqual(error.column, 13);
  });

  await check('missing import: resolution error naming the importing file', async () => {
    const appDir = slot('missing');
    fs.writeFileSync(
      path.join(appDir, 'src', 'components', 'Counter.js'),
      "import React from 'react';\nimport Missing from './DoesNotExist';\n\nexport default function Counter() {\n  return <Missing />;\n}\n",
    );
    const error = expectError(await client.build({appDir, platform: 'ios', ...outputs('missing')}), 'resolution');
    assert.strictEqual(error.file, 'src/components/Counter.js');
    assert.strictEqual(error.line, 2);
    assert.ok(error.message.includes('./DoesNotExist'), error.message);
  });

  await check('missing package: resolution error', async () => {
    const appDir = slot('missing-package');
    fs.appendFileSync(path.join(appDir, 'App.js'), "\nimport 'left-pad-not-installed';\n");
    const error = expectError(await client.build({appDir, platform: 'ios', ...outputs('missing-package')}), 'resolution');
    assert.strictEqual(error.file, 'App.js');
  });

  await check('missing entry file: resolution error', async () => {
    const appDir = slot('no-entry');
    const error = expectError(
      await client.build({appDir, platform: 'ios', entryFile: 'main.js', ...outputs('no-entry')}),
      'resolution',
    );
    assert.ok(error.message.includes('main.js'));
  });

  await check('an error is not sticky: fixing the file in the same appDir builds', async () => {
    const appDir = path.join(workspace, 'apps', 'syntax');
    fs.writeFileSync(path.join(appDir, 'src', 'Foo.js'), 'export function Foo() {\n  return "fixed-foo";\n}\n');
    const out = outputs('syntax');
    expectOk(await client.build({appDir, platform: 'ios', ...out}));
    assert.ok(fs.readFileSync(out.bundleOut, 'utf8').includes('fixed-foo'));
  });

  await check('invalid requests are refused without harm', async () => {
    const badSlot = await client.build({appDir: path.join(workspace, 'elsewhere'), platform: 'ios', ...outputs('bad')});
    assert.strictEqual(expectError(badSlot, 'internal').message.startsWith('Invalid request'), true);
    const badPlatform = await client.build({appDir: slot('bad'), platform: 'web', ...outputs('bad')});
    expectError(badPlatform, 'internal');
    const unknown = await client.request({type: 'explode'});
    expectError(unknown, 'internal');
  });

  await check('dev=false minify=true is minified; dev=true and minify=false are not', async () => {
    const appDir = slot('modes');
    const sizes = {};
    for (const [name, dev, minify] of [
      ['prod-min', false, true],
      ['prod', false, false],
      ['dev', true, false],
    ]) {
      const out = outputs(`modes-${name}`);
      expectOk(await client.build({appDir, platform: 'ios', dev, minify, ...out}));
      const code = fs.readFileSync(out.bundleOut, 'utf8');
      sizes[name] = {bytes: code.length, lines: code.split('\n').length, code};
    }
    const min = sizes['prod-min'];
    assert.ok(min.code.includes('__DEV__=false'));
    assert.ok(sizes.dev.code.includes('__DEV__ = true') || sizes.dev.code.includes('__DEV__=true'));
    // Minified: long lines, no indentation, local names mangled.
    assert.ok(min.bytes / min.lines > 1000, `minified bundle has ${min.lines} lines for ${min.bytes} bytes`);
    assert.ok(!min.code.includes('function countDone(tasks)'), 'minified bundle keeps parameter names');
    for (const name of ['prod', 'dev']) {
      assert.ok(sizes[name].code.includes('function countDone(tasks)'), `${name} bundle is minified`);
      assert.ok(sizes[name].bytes > min.bytes * 1.3, `${name} bundle not larger than the minified one`);
    }
    console.log(
      `     sizes: ${Object.entries(sizes)
        .map(([name, {bytes, lines}]) => `${name} ${bytes} B/${lines} lines`)
        .join(', ')}`,
    );
  });

  await check('requests sent together are answered in order, one at a time', async () => {
    const appDir = slot('burst');
    const ids = ['burst-1', 'burst-2', 'burst-ping', 'burst-3'];
    const seenBefore = client.lines.length;
    const answers = await Promise.all([
      client.request({id: ids[0], type: 'build', entryFile: 'index.js', platform: 'ios', dev: false, minify: true, appDir, ...outputs('burst-1')}),
      client.request({id: ids[1], type: 'build', entryFile: 'index.js', platform: 'android', dev: false, minify: true, appDir, ...outputs('burst-2')}),
      client.request({id: ids[2], type: 'ping'}),
      client.request({id: ids[3], type: 'build', entryFile: 'index.js', platform: 'ios', dev: true, minify: false, appDir, ...outputs('burst-3')}),
    ]);
    answers.forEach((answer, i) => assert.strictEqual(answer.id, ids[i]));
    answers.filter((a) => a.id !== 'burst-ping').forEach(expectOk);
    const order = client.lines.slice(seenBefore).map((line) => JSON.parse(line).id);
    assert.deepStrictEqual(order, ids);
  });

  const rssSeries = [];
  await check(`memory over ${options.builds} builds of distinct sources`, async () => {
    const durations = [];
    for (let i = 0; i < options.builds; i++) {
      // Half the builds reuse one slot, half use a new slot each time.
      const name = i % 2 === 0 ? 'memory' : `memory-${i}`;
      const appDir = slot(name);
      fs.appendFileSync(path.join(appDir, 'App.js'), `\nexport const buildMarker = 'memory-build-${i}';\n`);
      fs.writeFileSync(path.join(appDir, 'src', `Generated${i}.js`), `export default ${JSON.stringify('generated'.repeat(i + 1))};\n`);
      fs.appendFileSync(path.join(appDir, 'App.js'), `import generated${i} from './src/Generated${i}';\nexport {generated${i}};\n`);
      const out = outputs('memory');
      const response = expectOk(await client.build({appDir, platform: i % 4 < 2 ? 'ios' : 'android', ...out}));
      assert.ok(fs.readFileSync(out.bundleOut, 'utf8').includes(`memory-build-${i}`));
      fs.rmSync(appDir, {recursive: true, force: true});
      rssSeries.push(response.rssBytes);
      durations.push(response.durationMs);
    }
    const mb = (bytes) => Math.round(bytes / 1048576);
    const every = Math.max(1, Math.floor(options.builds / 10));
    console.log(`     rss MB every ${every} builds: ${rssSeries.filter((_, i) => i % every === 0 || i === rssSeries.length - 1).map(mb).join(' ')}`);
    const sorted = [...durations].sort((a, b) => a - b);
    console.log(`     build ms: median ${sorted[Math.floor(sorted.length / 2)]}, max ${sorted[sorted.length - 1]}; medians per tenth: ${Array.from({length: 10}, (_, k) => median(durations.slice(Math.floor((k * durations.length) / 10), Math.floor(((k + 1) * durations.length) / 10)))).join(' ')}`);
    // Bounded: the last fifth of the builds is not above the second fifth (+ margin).
    const fifth = Math.max(1, Math.floor(rssSeries.length / 5));
    const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
    const early = mean(rssSeries.slice(fifth, 2 * fifth));
    const late = mean(rssSeries.slice(-fifth));
    console.log(`     rss MB mean: builds ${fifth}-${2 * fifth - 1}: ${mb(early)}, last ${fifth}: ${mb(late)}`);
    assert.ok(Math.max(...rssSeries) < 800 * 1048576, `peak rss ${mb(Math.max(...rssSeries))} MB`);
    assert.ok(late < early + 64 * 1048576, `rss grew from ${mb(early)} to ${mb(late)} MB`);
  });

  await check('stdout carried only protocol lines', async () => {
    for (const line of client.lines) {
      JSON.parse(line); // the client would already have thrown
    }
    assert.ok(client.lines.length > 50);
  });

  await check('stdin closed: pending requests are answered, then exit 0', async () => {
    const pending = client.ping();
    const exited = client.close();
    assert.strictEqual((await pending).ok, true);
    const {code} = await exited;
    assert.strictEqual(code, 0);
  });

  await check('SIGTERM during a build: exits promptly', async () => {
    const other = new BundlerClient({workspace, cacheDir: path.join(root, 'cold-cache'), stderr: 'ignore'});
    const appDir = slot('sigterm');
    const building = other.build({appDir, platform: 'ios', ...outputs('sigterm')}).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // a cold build is under way
    const sent = Date.now();
    other.child.kill('SIGTERM');
    const {code, signal} = await other.exited;
    const took = Date.now() - sent;
    await building;
    console.log(`     exit ${code ?? signal} ${took} ms after SIGTERM`);
    assert.ok(took < 2000, `took ${took} ms`);
  });

  console.log(`\n${passes} passed, ${failures} failed (work files in ${root})`);
  if (failures === 0) {
    fs.rmSync(root, {recursive: true, force: true});
  }
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
