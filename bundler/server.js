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
 */

// A build allocates many objects that live for the whole build (its graph).
// With V8's small initial young generation they get promoted and collected as
// old objects: a warm build took ~65 ms instead of ~22 ms. Must run before the
// heap grows.
require('v8').setFlagsFromString('--min-semi-space-size=16');

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const util = require('util');
const crypto = require('crypto');

// ---------------------------------------------------------------------------
// stdout carries the protocol only. Anything else that writes to process.stdout
// (console.log in Metro, Babel, saveAssets...) is sent to stderr.
const protocolStream = process.stdout;
const writeProtocol = process.stdout.write.bind(process.stdout);
process.stdout.write = function writeToStderr(chunk, encoding, callback) {
  return process.stderr.write(chunk, encoding, callback);
};
protocolStream.on('error', (error) => {
  // The reader went away (EPIPE): nobody can receive answers any more.
  process.stderr.write(`[bundler] stdout closed (${error.code ?? error.message}); exiting\n`);
  process.exit(0);
});

function log(message) {
  process.stderr.write(`[bundler] ${message}\n`);
}

// ---------------------------------------------------------------------------
// Arguments.
function parseArgs(argv) {
  const options = {maxWorkers: 1, memoryCacheMb: 256};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) {
        throw new Error(`${arg} needs a value`);
      }
      return argv[++i];
    };
    if (arg === '--workspace') {
      options.workspace = next();
    } else if (arg === '--cache-dir') {
      options.cacheDir = next();
    } else if (arg === '--max-workers') {
      options.maxWorkers = Number(next());
    } else if (arg === '--memory-cache-mb') {
      options.memoryCacheMb = Number(next());
    } else {
      throw new Error(`unknown argument ${arg}`);
    }
  }
  for (const name of ['workspace', 'cacheDir']) {
    if (!options[name] || !path.isAbsolute(options[name])) {
      throw new Error(`--${name === 'cacheDir' ? 'cache-dir' : name} must be an absolute path`);
    }
  }
  if (!Number.isInteger(options.maxWorkers) || options.maxWorkers < 1) {
    throw new Error('--max-workers must be a positive integer');
  }
  if (!(options.memoryCacheMb >= 0)) {
    throw new Error('--memory-cache-mb must be a number >= 0');
  }
  return options;
}

let options;
try {
  options = parseArgs(process.argv.slice(2));
} catch (error) {
  log(`usage: node server.js --workspace <ABS DIR> --cache-dir <ABS DIR> [--max-workers N] [--memory-cache-mb N]\n${error.message}`);
  process.exit(2);
}

fs.mkdirSync(path.join(options.workspace, 'apps'), {recursive: true});
fs.mkdirSync(options.cacheDir, {recursive: true});
// Real paths: Metro's file map works on canonical paths.
const WORKSPACE = fs.realpathSync(options.workspace);
const APPS_DIR = path.join(WORKSPACE, 'apps');
const CACHE_DIR = fs.realpathSync(options.cacheDir);
const SLOT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

// ---------------------------------------------------------------------------
// Metro internals this process relies on. Versions are pinned exactly in
// package.json; a Metro upgrade must re-run selfcheck.js. Fail at start-up,
// not in a build, if one of them is gone.
function internal(owner, name) {
  if (typeof owner?.prototype?.[name] !== 'function') {
    throw new Error(`Metro internal ${owner?.name}.prototype.${name} is missing: metro version changed?`);
  }
  return owner.prototype[name];
}
const {Watcher} = require('metro-file-map/private/Watcher');
const DependencyGraph = require('metro/private/node-haste/DependencyGraph').default;
internal(Watcher, 'watch');

// 1. No file watching. The file map calls Watcher#watch(onChange) once it is
//    built; keep onChange to feed it events ourselves instead of starting
//    watcher backends (no inotify/fs.watch, no events we did not ask for).
let feedFileMap = null;
Watcher.prototype.watch = async function captureOnChange(onChange) {
  feedFileMap = onChange;
};

// 2. Metro drops every cached resolution on any file change. Only resolutions
//    made from files in the workspace can depend on the workspace's files
//    (node_modules never resolves into it: no haste, no extraNodeModules), so
//    keep the others; resolving react-native's ~500 modules again for every
//    build is most of a warm build otherwise.
const originalOnHasteChange = internal(DependencyGraph, '_onHasteChange');
DependencyGraph.prototype._onHasteChange = function keepNodeModulesResolutions(event) {
  const previous = this._resolutionCache;
  originalOnHasteChange.call(this, event);
  if (previous instanceof Map && this._resolutionCache instanceof Map) {
    const prefix = WORKSPACE + path.sep;
    for (const byOrigin of previous.values()) {
      for (const originKey of byOrigin.keys()) {
        if (originKey === '' || originKey === WORKSPACE || originKey.startsWith(prefix)) {
          byOrigin.delete(originKey);
        }
      }
    }
    this._resolutionCache = previous;
  }
};

// 3. Transform cache keys hold the file's path relative to projectRoot, so every
//    slot would transform its sources again. For source files (not assets),
//    nothing in the output depends on the slot's name (Babel and Metro see the
//    path inside the app, its extension and basename unchanged), so transform
//    them under one virtual slot with the content read now: equal sources hit
//    the cache in any slot, and the key's SHA-1 is that of the bytes transformed.
//    (Assets keep their real path: Metro reads sibling files for them.)
const VIRTUAL_SLOT = '@app'; // '@' is not allowed in slot names
const Transformer = require('metro/private/DeltaBundler/Transformer').default;
const originalTransformFile = internal(Transformer, 'transformFile');
let assetExtensions = new Set();
Transformer.prototype.transformFile = async function transformAppSourcesUnderOneSlot(filePath, transformOptions, fileBuffer) {
  if (fileBuffer == null && filePath.startsWith(APPS_DIR + path.sep)) {
    const inApps = filePath.slice(APPS_DIR.length + 1);
    const slotEnd = inApps.indexOf(path.sep);
    if (slotEnd > 0 && !assetExtensions.has(path.extname(filePath).slice(1))) {
      const content = await fs.promises.readFile(filePath);
      if (filePath.endsWith('.json')) {
        checkJson(filePath, content);
      }
      const virtualPath = path.join(APPS_DIR, VIRTUAL_SLOT, inApps.slice(slotEnd + 1));
      return originalTransformFile.call(this, virtualPath, transformOptions, content);
    }
  }
  return originalTransformFile.call(this, filePath, transformOptions, fileBuffer);
};

/**
 * Metro bundles a .json file as `module.exports = <text>` without parsing it:
 * broken JSON gives a broken bundle (or a minifier error about wrapped code).
 * Report text that is not even a JavaScript expression as a syntax error here,
 * at its real position (what JavaScript accepts, like a trailing comma, still
 * bundles, as with the CLI).
 */
function checkJson(filePath, content) {
  const text = content.toString('utf8');
  try {
    JSON.parse(text);
    return;
  } catch (jsonError) {
    try {
      require('@babel/parser').parseExpression(text, {errorRecovery: false});
    } catch (parseError) {
      const loc = parseError.loc ?? null;
      throw Object.assign(new SyntaxError(`${filePath}: invalid JSON: ${jsonError.message}`), {
        hivesyncType: 'syntax',
        hivesyncFile: filePath,
        hivesyncLine: loc ? loc.line : null,
        hivesyncColumn: loc ? loc.column + 1 : null,
      });
    }
  }
}

// 4. Tell syntax errors from other transform errors: Metro turns every Babel
//    error into a TransformError; remember whether the parser raised it.
const WorkerFarm = require('metro/private/DeltaBundler/WorkerFarm').default;
const originalFormatBabelError = internal(WorkerFarm, '_formatBabelError');
WorkerFarm.prototype._formatBabelError = function markSyntaxErrors(error, filename) {
  const formatted = originalFormatBabelError.call(this, error, filename);
  formatted.hivesyncSyntax =
    error?.name === 'SyntaxError' || error?.type === 'SyntaxError' || error?.code === 'BABEL_PARSER_SYNTAX_ERROR';
  return formatted;
};

const Server = require('metro/private/Server').default;
const splitBundleOptions = require('metro/private/lib/splitBundleOptions').default;
const baseJSBundle = require('metro/private/DeltaBundler/Serializers/baseJSBundle').default;
const bundleToString = require('metro/private/lib/bundleToString').default;
const {createConfig, stderrReporter} = require('./metro.config.js');
for (const name of ['_resolveRelativePath', '_shouldAddModuleToIgnoreList', '_getModuleSourceUrl', '_getAssetsFromDependencies']) {
  internal(Server, name);
}
internal(require('metro/private/DeltaBundler').default, 'endGraph');

const CLI_PLUGIN_DIR = path.dirname(require.resolve('@react-native/community-cli-plugin/package.json'));
const bundleCommandModule = (name) =>
  require(path.join(CLI_PLUGIN_DIR, 'dist', 'commands', 'bundle', name)).default;
const saveAssets = bundleCommandModule('saveAssets');
const getAssetDestPathIOS = bundleCommandModule('getAssetDestPathIOS');
const getAssetDestPathAndroid = bundleCommandModule('getAssetDestPathAndroid');
const filterPlatformAssetScales = bundleCommandModule('filterPlatformAssetScales');

// ---------------------------------------------------------------------------
// Transform cache: an in-memory LRU in front of a FileStore in --cache-dir.

/** Same on-disk format as metro-cache's FileStore, but writes are atomic (temp
 *  file + rename) so that several bundler processes can share a cache dir. */
class AtomicFileStore {
  constructor(root) {
    this.root = root;
    this.name = 'AtomicFileStore';
  }
  filePath(key) {
    return path.join(this.root, key.subarray(0, 1).toString('hex'), key.subarray(1).toString('hex'));
  }
  async get(key) {
    try {
      const file = this.filePath(key);
      const data = await fs.promises.readFile(file);
      // Entries in use keep a recent mtime, so pruning by age (README) only
      // removes what no process has read for a while.
      const now = new Date();
      fs.promises.utimes(file, now, now).catch(() => {});
      if (data[0] === 0) {
        return data.subarray(1);
      }
      return JSON.parse(data.toString('utf8'));
    } catch (error) {
      if (error.code === 'ENOENT' || error instanceof SyntaxError) {
        return null;
      }
      throw error;
    }
  }
  async set(key, value) {
    const target = this.filePath(key);
    const content =
      value instanceof Buffer ? Buffer.concat([Buffer.from([0]), value]) : (JSON.stringify(value) ?? 'null');
    const temp = `${target}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
    try {
      await fs.promises.writeFile(temp, content);
    } catch (error) {
      if (error.code !== 'ENOENT') {
        throw error;
      }
      await fs.promises.mkdir(path.dirname(target), {recursive: true});
      await fs.promises.writeFile(temp, content);
    }
    await fs.promises.rename(temp, target);
  }
  clear() {}
}

function deepFreeze(value) {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) {
      deepFreeze(value[key]);
    }
  }
  return value;
}

/**
 * The in-memory copy of a transform result drops what only source maps use
 * (this server writes none): the per-module mappings are most of a result's
 * memory. The FileStore on disk keeps the full result.
 */
function withoutSourceMaps(value) {
  if (value === null || typeof value !== 'object' || value instanceof Buffer || !Array.isArray(value.output)) {
    return value;
  }
  return {
    ...value,
    output: value.output.map((output) =>
      output && output.data ? {...output, data: {...output.data, map: [], functionMap: null}} : output,
    ),
  };
}

/** Rough heap bytes of a (source-map-free) transform result. */
function approximateSize(value) {
  if (value instanceof Buffer) {
    return value.length;
  }
  let size = 0;
  for (const output of value?.output ?? []) {
    size += (output?.data?.code?.length ?? 0) + 200;
  }
  for (const dependency of value?.dependencies ?? []) {
    size += 300 + (dependency?.data?.locs?.length ?? 0) * 150;
  }
  return size + 500;
}

/** LRU of transform results. Values are frozen: Metro must never mutate them. */
class MemoryStore {
  constructor(maxBytes) {
    this.name = 'MemoryStore';
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.entries = new Map();
  }
  get(key) {
    const id = key.toString('binary');
    const entry = this.entries.get(id);
    if (entry === undefined) {
      return null;
    }
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.value;
  }
  set(key, fullValue) {
    const id = key.toString('binary');
    // A JSON round trip (what the FileStore stores anyway) leaves flat strings
    // that share nothing with the transformer's intermediate strings: less
    // memory, and concatenating modules into a bundle is ~3x faster.
    const stripped = withoutSourceMaps(fullValue);
    const value = stripped instanceof Buffer ? stripped : JSON.parse(JSON.stringify(stripped));
    const size = approximateSize(value);
    if (size > this.maxBytes) {
      return;
    }
    const previous = this.entries.get(id);
    if (previous !== undefined) {
      this.bytes -= previous.size;
      this.entries.delete(id);
    }
    this.entries.set(id, {value: deepFreeze(value), size});
    this.bytes += size;
    for (const [oldId, oldEntry] of this.entries) {
      if (this.bytes <= this.maxBytes) {
        break;
      }
      this.entries.delete(oldId);
      this.bytes -= oldEntry.size;
    }
  }
  clear() {
    this.entries.clear();
    this.bytes = 0;
  }
}

// ---------------------------------------------------------------------------
// Metro.

function toolchainCacheVersion() {
  // Part of every transform cache key: changing the asset plugin or the
  // config must not reuse results made with the old ones.
  const hash = crypto.createHash('sha1');
  for (const file of ['assetPlugin.js', 'metro.config.js']) {
    hash.update(fs.readFileSync(path.join(__dirname, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

const memoryStore = options.memoryCacheMb > 0 ? new MemoryStore(options.memoryCacheMb * 1024 * 1024) : null;
const baseConfig = createConfig({
  projectRoot: WORKSPACE,
  cacheDir: CACHE_DIR,
  assetPlugins: [require.resolve('./assetPlugin.js')],
  reporter: stderrReporter(),
  maxWorkers: options.maxWorkers,
});
const config = {
  ...baseConfig,
  cacheVersion: toolchainCacheVersion(),
  cacheStores: [
    ...(memoryStore ? [memoryStore] : []),
    new AtomicFileStore(path.join(CACHE_DIR, 'metro-transform')),
  ],
  // No file-map cache on disk: start-up is as fast without it (~0.5 s), and
  // one cache file per workspace path would pile up in --cache-dir.
  unstable_fileMapCacheManagerFactory: () => ({
    read: async () => null,
    write: async () => {},
    end: async () => {},
  }),
  watcher: {
    ...baseConfig.watcher,
    unstable_autoSaveCache: {enabled: false},
  },
};

assetExtensions = new Set(config.resolver.assetExts);

/** Metro ignores paths matching resolver.blockList (by default anything in a __tests__ directory). */
function isBlocked(file) {
  const blockList = config.resolver.blockList;
  const patterns = Array.isArray(blockList) ? blockList : [blockList];
  return patterns.some((pattern) => pattern instanceof RegExp && pattern.test(file));
}
if (isBlocked(path.join(APPS_DIR, 'slot', 'index.js'))) {
  log(`the workspace ${WORKSPACE} lies in a path Metro ignores (resolver.blockList); choose another`);
  process.exit(2);
}

let metro = null; // {server, bundler, deltaBundler, fileMap}

async function startMetro() {
  const started = Date.now();
  const server = new Server(config, {watch: true});
  await server.ready();
  const bundler = server.getBundler();
  const depGraph = await bundler.getBundler().getDependencyGraph();
  const fileMap = depGraph.getWatcher();
  if (typeof feedFileMap !== 'function') {
    throw new Error('metro-file-map did not start watch mode; cannot feed it changes');
  }
  metro = {server, bundler, deltaBundler: bundler.getDeltaBundler(), fileMap, feed: feedFileMap};
  // Forget whatever a previous process left under apps/.
  metro.feed({event: 'delete', root: WORKSPACE, relativePath: 'apps', clock: null});
  log(`Metro ready in ${Date.now() - started} ms (workspace ${WORKSPACE}, cache ${CACHE_DIR})`);
}

/**
 * Make Metro's file map hold exactly the files now in appDir: drop the
 * directory, crawl it again and wait until the crawl is published (a "change"
 * event listing the entry file as added).
 */
function syncAppDir(appRelative, entryRelative, timeoutMs = 60000) {
  const {fileMap, feed} = metro;
  return new Promise((resolve, reject) => {
    let timer = null;
    const onChange = (event) => {
      for (const [canonicalPath] of event.changes.addedFiles) {
        if (canonicalPath === entryRelative) {
          clearTimeout(timer);
          fileMap.removeListener('change', onChange);
          resolve();
          return;
        }
      }
    };
    fileMap.on('change', onChange);
    timer = setTimeout(() => {
      fileMap.removeListener('change', onChange);
      reject(new Error(`Metro's file map did not pick up ${appRelative} within ${timeoutMs} ms`));
    }, timeoutMs);
    feed({event: 'delete', root: WORKSPACE, relativePath: appRelative, clock: null});
    feed({event: 'recrawl', root: WORKSPACE, relativePath: appRelative, clock: null});
  });
}

function forgetAppDir(appRelative) {
  if (metro) {
    metro.feed({event: 'delete', root: WORKSPACE, relativePath: appRelative, clock: null});
  }
}

/** The bundle for one entry: Server#build without the source map it always computes. */
async function bundleEntry({entryPath, platform, dev, minify}) {
  const {server, bundler, deltaBundler} = metro;
  const bundleOptions = {
    ...Server.DEFAULT_BUNDLE_OPTIONS,
    entryFile: entryPath,
    platform,
    dev,
    minify,
    inlineSourceMap: false,
    createModuleIdFactory: config.serializer.createModuleIdFactory,
  };
  const {entryFile, graphOptions, resolverOptions, serializerOptions, transformOptions} =
    splitBundleOptions(bundleOptions);
  const timings = {};
  let mark = Date.now();
  const {prepend, graph} = await bundler.buildGraph(entryFile, transformOptions, resolverOptions, {
    onProgress: null,
    shallow: graphOptions.shallow,
    lazy: graphOptions.lazy,
  });
  try {
    timings.graphMs = Date.now() - mark;
    mark = Date.now();
    // Module ids from 0 for every bundle, as the CLI numbers them: the bundle
    // does not depend on what this process built before.
    const createModuleId = config.serializer.createModuleIdFactory();
    const serializerBundleOptions = {
      asyncRequireModulePath: await server._resolveRelativePath(config.transformer.asyncRequireModulePath, {
        relativeTo: 'project',
        resolverOptions,
        transformOptions,
      }),
      processModuleFilter: config.serializer.processModuleFilter,
      createModuleId,
      getRunModuleStatement: config.serializer.getRunModuleStatement,
      globalPrefix: config.transformer.globalPrefix,
      dev: transformOptions.dev,
      includeAsyncPaths: graphOptions.lazy,
      projectRoot: config.projectRoot,
      modulesOnly: serializerOptions.modulesOnly,
      runBeforeMainModule: config.serializer.getModulesRunBeforeMainModule(
        path.relative(config.projectRoot, entryFile),
      ),
      runModule: serializerOptions.runModule,
      sourceMapUrl: serializerOptions.sourceMapUrl,
      sourceUrl: serializerOptions.sourceUrl,
      inlineSourceMap: serializerOptions.inlineSourceMap,
      serverRoot: config.server.unstable_serverRoot ?? config.projectRoot,
      shouldAddToIgnoreList: (module) => server._shouldAddModuleToIgnoreList(module),
      getSourceUrl: (module) => server._getModuleSourceUrl(module, serializerOptions.sourcePaths),
    };
    const code = bundleToString(baseJSBundle(entryFile, prepend, graph, serializerBundleOptions)).code;
    timings.serializeMs = Date.now() - mark;
    mark = Date.now();
    const assets = await server._getAssetsFromDependencies(graph.dependencies, platform);
    timings.assetDataMs = Date.now() - mark;
    return {code, assets, timings};
  } finally {
    // A graph kept registered holds every module of the bundle: end it.
    deltaBundler.endGraph(graph);
  }
}

// ---------------------------------------------------------------------------
// Requests.

class RequestError extends Error {}

function requireString(request, name) {
  const value = request[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new RequestError(`"${name}" must be a non-empty string`);
  }
  return value;
}

function requireBoolean(request, name) {
  const value = request[name];
  if (typeof value !== 'boolean') {
    throw new RequestError(`"${name}" must be true or false`);
  }
  return value;
}

function validateBuild(request) {
  const appDir = requireString(request, 'appDir');
  if (!path.isAbsolute(appDir)) {
    throw new RequestError('"appDir" must be an absolute path');
  }
  const normalAppDir = path.normalize(appDir).replace(/[\\/]+$/, '');
  let appDirReal;
  try {
    appDirReal = fs.realpathSync(normalAppDir);
  } catch {
    throw new RequestError(`appDir ${appDir} does not exist`);
  }
  if (path.dirname(appDirReal) !== APPS_DIR || !SLOT_NAME.test(path.basename(appDirReal))) {
    throw new RequestError(
      `appDir must be ${APPS_DIR}${path.sep}<slot> (slot: letters, digits, '.', '_', '-'), got ${appDir}`,
    );
  }
  if (isBlocked(path.join(appDirReal, 'index.js'))) {
    throw new RequestError(`appDir ${appDir} is a path Metro ignores (resolver.blockList)`);
  }
  if (!fs.statSync(appDirReal).isDirectory()) {
    throw new RequestError(`appDir ${appDir} is not a directory`);
  }
  const entryFile = requireString(request, 'entryFile');
  if (path.isAbsolute(entryFile) || entryFile.split(/[\\/]/).some((part) => part === '..')) {
    throw new RequestError('"entryFile" must be a path relative to appDir, without ".."');
  }
  if (isBlocked(path.join(appDirReal, entryFile))) {
    throw new RequestError(`"entryFile" ${entryFile} is in a path Metro ignores (resolver.blockList)`);
  }
  const platform = requireString(request, 'platform');
  if (platform !== 'ios' && platform !== 'android') {
    throw new RequestError('"platform" must be "ios" or "android"');
  }
  const dev = requireBoolean(request, 'dev');
  const minify = requireBoolean(request, 'minify');
  const bundleOut = requireString(request, 'bundleOut');
  const assetsDir = requireString(request, 'assetsDir');
  if (!path.isAbsolute(bundleOut) || !path.isAbsolute(assetsDir)) {
    throw new RequestError('"bundleOut" and "assetsDir" must be absolute paths');
  }
  return {appDir: appDirReal, entryFile: path.normalize(entryFile), platform, dev, minify, bundleOut, assetsDir};
}

/** Where saveAssets puts each asset file (same functions, same filters), relative to assetsDir. */
function assetDestinations(assets, platform) {
  const destinations = new Set();
  const destPath = platform === 'android' ? getAssetDestPathAndroid : getAssetDestPathIOS;
  for (const asset of assets) {
    const validScales = new Set(filterPlatformAssetScales(platform, asset.scales));
    for (const scale of asset.scales) {
      if (validScales.has(scale)) {
        destinations.add(destPath(asset, scale).split(path.sep).join('/'));
      }
    }
  }
  if (platform === 'android' && assets.length > 0) {
    destinations.add('raw/keep.xml');
  }
  return [...destinations].sort();
}

async function writeAtomically(file, content) {
  await fs.promises.mkdir(path.dirname(file), {recursive: true});
  const temp = `${file}.${process.pid}.tmp`;
  await fs.promises.writeFile(temp, content);
  await fs.promises.rename(temp, file);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let builds = 0;

// V8 lets the heap grow far beyond what is live before it collects (after a
// cold build it allows hundreds of MB): RSS would swing up to ~800 MB while
// ~50 MB is live. Collect after a build when the heap has grown well past
// what was live after the last collection. Runs after the answer is written.
require('v8').setFlagsFromString('--expose-gc');
const collectGarbage = require('vm').runInNewContext('gc');
let liveHeapBytes = 0;
function collectGarbageIfGrown() {
  const {heapUsed} = process.memoryUsage();
  if (heapUsed > liveHeapBytes * 1.5 + 64 * 1024 * 1024) {
    collectGarbage();
    liveHeapBytes = process.memoryUsage().heapUsed;
  }
}

async function handleBuild(request, started) {
  const spec = validateBuild(request);
  const appRelative = path.relative(WORKSPACE, spec.appDir);
  const entryPath = path.join(spec.appDir, spec.entryFile);
  let entryStat = null;
  try {
    entryStat = fs.statSync(entryPath);
  } catch {}
  if (!entryStat || !entryStat.isFile()) {
    throw Object.assign(new Error(`The entry file ${spec.entryFile} does not exist in the sources`), {
      hivesyncType: 'resolution',
      hivesyncFile: null,
    });
  }
  if (!config.resolver.sourceExts.includes(path.extname(entryPath).slice(1))) {
    throw new RequestError(`"entryFile" must have one of the extensions ${config.resolver.sourceExts.join(', ')}`);
  }
  const timings = {};
  let mark = Date.now();
  try {
    await syncAppDir(appRelative, path.relative(WORKSPACE, entryPath));
    timings.syncMs = Date.now() - mark;
    // What `react-native bundle` does before building.
    process.env.NODE_ENV = spec.dev ? 'development' : 'production';
    const result = await bundleEntry({entryPath, platform: spec.platform, dev: spec.dev, minify: spec.minify});
    Object.assign(timings, result.timings);
    mark = Date.now();
    const code = Buffer.from(result.code, 'utf8');
    await writeAtomically(spec.bundleOut, code);
    timings.writeMs = Date.now() - mark;
    mark = Date.now();
    await fs.promises.mkdir(spec.assetsDir, {recursive: true});
    await withTimeout(saveAssets(result.assets, spec.platform, spec.assetsDir, undefined), 120000, 'Copying assets');
    const assets = assetDestinations(result.assets, spec.platform);
    for (const asset of assets) {
      if (!fs.existsSync(path.join(spec.assetsDir, asset))) {
        throw new Error(`asset ${asset} was not written to ${spec.assetsDir}`);
      }
    }
    timings.assetsMs = Date.now() - mark;
    const response = {
      id: request.id,
      ok: true,
      bundleBytes: code.length,
      assets,
      durationMs: Date.now() - started,
      rssBytes: process.memoryUsage.rss(),
      builds,
    };
    if (request.timings === true) {
      response.timings = timings;
    }
    return response;
  } finally {
    forgetAppDir(appRelative);
  }
}

// --- errors ------------------------------------------------------------------

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;
const NODE_MODULES_DIR = path.join(__dirname, 'node_modules');

/** Metro's message with ANSI colours removed and server paths made relative to the app. */
function cleanMessage(message, appDir) {
  let text = String(message ?? '').replace(ANSI, '');
  const replacements = [];
  const virtualDir = path.join(APPS_DIR, VIRTUAL_SLOT);
  for (const dir of [appDir, virtualDir]) {
    if (dir) {
      replacements.push([dir + path.sep, ''], [path.relative(WORKSPACE, dir) + path.sep, '']);
    }
  }
  replacements.push(
    [path.relative(WORKSPACE, NODE_MODULES_DIR), 'node_modules'],
    [NODE_MODULES_DIR + path.sep, 'node_modules/'],
    [NODE_MODULES_DIR, 'node_modules'],
  );
  for (const [from, to] of replacements) {
    text = text.split(from).join(to);
  }
  return text.trimEnd();
}

/** A path (absolute or relative to the workspace, real or virtual slot) relative to appDir, or null. */
function relativeToApp(file, appDir) {
  if (typeof file !== 'string' || !file || !appDir) {
    return null;
  }
  let absolute = path.isAbsolute(file) ? file : path.join(WORKSPACE, file);
  const virtualDir = path.join(APPS_DIR, VIRTUAL_SLOT);
  if (absolute.startsWith(virtualDir + path.sep)) {
    absolute = path.join(appDir, absolute.slice(virtualDir.length + 1));
  }
  const relative = path.relative(appDir, absolute);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    return null;
  }
  return relative.split(path.sep).join('/');
}

/** Line and column (1-based) of the ">" line and "^" marker of a Babel code frame. */
function locationFromCodeFrame(text) {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const match = /^>\s*(\d+)\s*\|/.exec(lines[i]);
    if (match) {
      const line = Number(match[1]);
      const marker = lines[i + 1] ? /^\s*\|(\s*)\^/.exec(lines[i + 1]) : null;
      const gutter = lines[i].indexOf('|');
      const column = marker ? lines[i + 1].indexOf('^') - gutter - 1 : null;
      return {line, column: column != null && column >= 1 ? column : null};
    }
  }
  return {line: null, column: null};
}

function describeError(error, appDir) {
  if (error instanceof RequestError) {
    return {type: 'internal', message: `Invalid request: ${error.message}`, file: null, line: null, column: null};
  }
  const message = cleanMessage(error?.message ?? error, appDir);
  if (error && error.hivesyncType) {
    return {
      type: error.hivesyncType,
      message,
      file: relativeToApp(error.hivesyncFile, appDir),
      line: error.hivesyncLine ?? null,
      column: error.hivesyncColumn ?? null,
    };
  }
  if (error && (error.type === 'UnableToResolveError' || error.constructor?.name === 'UnableToResolveError')) {
    const {line, column} = locationFromCodeFrame(message);
    return {type: 'resolution', message, file: relativeToApp(error.originModulePath, appDir), line, column};
  }
  if (error && error.type === 'TransformError') {
    const file = relativeToApp(error.filename, appDir) ?? relativeToApp(/^(?:Error: )?([^\s:]+):/.exec(message)?.[1], appDir);
    const hasLocation = typeof error.lineNumber === 'number' && error.lineNumber > 0;
    let line = hasLocation ? error.lineNumber : null;
    // Babel columns are 0-based; editors (and this protocol) count from 1.
    let column = hasLocation && typeof error.column === 'number' ? error.column + 1 : null;
    if (line == null) {
      ({line, column} = locationFromCodeFrame(message));
    }
    const snippet = error.snippet ? cleanMessage(error.snippet, appDir) : '';
    return {
      type: error.hivesyncSyntax === true ? 'syntax' : 'transform',
      message: snippet && !message.includes(snippet) ? `${message}\n${snippet}` : message,
      file,
      line,
      column,
    };
  }
  return {
    type: 'internal',
    message: cleanMessage(error?.stack ?? message, appDir),
    file: null,
    line: null,
    column: null,
  };
}

// --- request loop -------------------------------------------------------------

async function handle(line) {
  const started = Date.now();
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    return failure(null, new RequestError(`not JSON: ${error.message}`), started, null);
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    return failure(null, new RequestError('a request is a JSON object'), started, null);
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
      return await handleBuild(request, started);
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
    return failure(id, error, started, appDir);
  }
}

function failure(id, error, started, appDir) {
  return {
    id,
    ok: false,
    error: describeError(error, appDir),
    durationMs: Date.now() - started,
    rssBytes: process.memoryUsage.rss(),
  };
}

function respond(response) {
  writeProtocol(JSON.stringify(response) + '\n');
}

let queue = startMetro().catch((error) => {
  log(`Metro failed to start: ${error?.stack ?? error}`);
  process.exit(1);
});

const input = readline.createInterface({input: process.stdin, crlfDelay: Infinity, terminal: false});
input.on('line', (line) => {
  if (line.trim() === '') {
    return;
  }
  queue = queue.then(async () => {
    respond(await handle(line));
    collectGarbageIfGrown();
  });
});
input.on('close', () => {
  // Answer what was already asked, then leave.
  queue.then(async () => {
    if (metro) {
      await Promise.race([metro.server.end(), new Promise((resolve) => setTimeout(resolve, 2000))]);
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
