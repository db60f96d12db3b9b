'use strict';
/**
 * Metro configuration shared by server.js (the long-lived bundler) and the
 * `react-native bundle` CLI (used by measure.js as the reference).
 *
 * The apps being bundled have no node_modules of their own: react, react-native
 * and the Babel runtime resolve from bundler/node_modules. User sources never
 * configure the toolchain: app-provided babel.config.js / .babelrc /
 * metro.config.js are ignored (they would be code run inside the bundler).
 *
 * As a CLI config (`react-native bundle --config bundler/metro.config.js`) it
 * bundles the app in $HIVESYNC_APP_DIR with that directory as projectRoot and
 * its cache in $HIVESYNC_CACHE_DIR (both required).
 */
const path = require('path');
const {getDefaultConfig, mergeConfig} = require('@react-native/metro-config');
const {FileStore} = require('metro-cache');

const BUNDLER_DIR = __dirname;
const NODE_MODULES = path.join(BUNDLER_DIR, 'node_modules');

/** A reporter that keeps Metro quiet: warnings and errors go to stderr, never stdout. */
function stderrReporter() {
  return {
    update(event) {
      switch (event.type) {
        case 'bundling_error':
        case 'worker_stdout_chunk':
        case 'worker_stderr_chunk':
        case 'cache_read_error':
        case 'cache_write_error':
        case 'transform_cache_reset':
        case 'dep_graph_loading':
          if (process.env.HIVESYNC_BUNDLER_DEBUG) {
            process.stderr.write(`[metro] ${event.type} ${event.chunk ?? event.error?.message ?? ''}\n`);
          }
          break;
        case 'client_log':
        case 'unstable_server_log':
          break;
        default:
          break;
      }
    },
  };
}

/**
 * @param {object} options
 * @param {string} options.projectRoot  absolute; every bundled app lies under it
 * @param {string} options.cacheDir     absolute; transform cache and file-map cache
 * @param {Array<Function>} [options.assetPlugins] paths of asset plugin modules
 * @param {object} [options.reporter]
 * @param {number} [options.maxWorkers]
 */
function createConfig({projectRoot, cacheDir, assetPlugins = [], reporter, maxWorkers}) {
  const base = getDefaultConfig(projectRoot);
  const overrides = {
    projectRoot,
    // projectRoot must be watched; node_modules lives outside it.
    watchFolders: [projectRoot, NODE_MODULES],
    cacheStores: [new FileStore({root: path.join(cacheDir, 'metro-transform')})],
    fileMapCacheDirectory: path.join(cacheDir, 'metro-file-map'),
    resolver: {
      // The app has no node_modules: everything resolves from the toolchain's.
      nodeModulesPaths: [NODE_MODULES],
      platforms: ['ios', 'android', 'native'],
      useWatchman: false,
    },
    transformer: {
      // Never load Babel configuration from the (untrusted) sources.
      enableBabelRCLookup: false,
      assetPlugins,
    },
    watcher: {
      healthCheck: {enabled: false},
    },
    resetCache: false,
  };
  if (reporter) {
    overrides.reporter = reporter;
  }
  if (maxWorkers) {
    overrides.maxWorkers = maxWorkers;
  }
  return mergeConfig(base, overrides);
}

/** As a CLI config file: Metro calls the exported function. */
function configFromEnvironment() {
  if (!process.env.HIVESYNC_APP_DIR || !process.env.HIVESYNC_CACHE_DIR) {
    throw new Error('Set HIVESYNC_APP_DIR and HIVESYNC_CACHE_DIR to use bundler/metro.config.js with the CLI');
  }
  const cacheDir = path.resolve(process.env.HIVESYNC_CACHE_DIR);
  // metro-file-map does not create its cache directory.
  require('fs').mkdirSync(path.join(cacheDir, 'metro-file-map'), {recursive: true});
  return createConfig({projectRoot: path.resolve(process.env.HIVESYNC_APP_DIR), cacheDir});
}

module.exports = configFromEnvironment;
module.exports.createConfig = createConfig;
module.exports.stderrReporter = stderrReporter;
module.exports.NODE_MODULES = NODE_MODULES;
