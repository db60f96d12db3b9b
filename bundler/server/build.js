'use strict';
/**
 * A build request, from its fields to the answer: validate it, bring Metro's
 * file map in step with appDir, bundle, write the bundle atomically and the
 * assets exactly as `react-native bundle --assets-dest` does (its own
 * saveAssets), then make the file map forget appDir again.
 */
const fs = require('fs');
const path = require('path');

const {bundleEntry} = require('./bundle');
const {RequestError} = require('./errors');
const {validateBuild} = require('./validation');

const CLI_PLUGIN_DIR = path.dirname(require.resolve('@react-native/community-cli-plugin/package.json'));
const bundleCommandModule = (name) =>
  require(path.join(CLI_PLUGIN_DIR, 'dist', 'commands', 'bundle', name)).default;
const saveAssets = bundleCommandModule('saveAssets');
const getAssetDestPathIOS = bundleCommandModule('getAssetDestPathIOS');
const getAssetDestPathAndroid = bundleCommandModule('getAssetDestPathAndroid');
const filterPlatformAssetScales = bundleCommandModule('filterPlatformAssetScales');

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

/**
 * Handles one build request on a started MetroServer; throws on failure.
 * @param {number} started  Date.now() when the request was taken off the queue
 * @param {number} builds  the builds counter, this request included (for the answer)
 */
async function handleBuild(metro, request, started, builds) {
  const {workspace} = metro.layout;
  const spec = validateBuild(request, metro);
  const appRelative = path.relative(workspace, spec.appDir);
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
  const {sourceExts} = metro.config.resolver;
  if (!sourceExts.includes(path.extname(entryPath).slice(1))) {
    throw new RequestError(`"entryFile" must have one of the extensions ${sourceExts.join(', ')}`);
  }
  const timings = {};
  let mark = Date.now();
  try {
    await metro.syncAppDir(appRelative, path.relative(workspace, entryPath));
    timings.syncMs = Date.now() - mark;
    // What `react-native bundle` does before building.
    process.env.NODE_ENV = spec.dev ? 'development' : 'production';
    const result = await bundleEntry(metro, {entryPath, platform: spec.platform, dev: spec.dev, minify: spec.minify});
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
      id: request.id ?? null, // as every other answer: null when the request had none
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
    metro.forgetAppDir(appRelative);
  }
}

module.exports = {handleBuild};
