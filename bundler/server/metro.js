'use strict';
/**
 * The one Metro server of this process (projectRoot = the workspace): its
 * config (cache stores, no file-map cache, toolchain cache version), start-up,
 * and keeping its file map in step with one app directory at a time.
 *
 * Load this module only after applyMetroPatches() (metroPatches.js): start()
 * relies on patch 1 to receive the file map's change callback.
 */
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const Server = require('metro/private/Server').default;
const {createConfig, stderrReporter} = require('../metro.config.js');
const {AtomicFileStore, MemoryStore} = require('./cacheStores');
const {fileMapFeed, setAssetExtensions} = require('./metroPatches');
const {log} = require('./stdio');

const BUNDLER_DIR = path.join(__dirname, '..');

function toolchainCacheVersion() {
  // Part of every transform cache key: changing the asset plugin or the
  // config must not reuse results made with the old ones.
  const hash = crypto.createHash('sha1');
  for (const file of ['assetPlugin.js', 'metro.config.js']) {
    hash.update(fs.readFileSync(path.join(BUNDLER_DIR, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

class MetroServer {
  /**
   * Builds the config; nothing starts before start().
   * @param {{maxWorkers: number, memoryCacheMb: number}} options  parsed command line
   * @param {{workspace: string, appsDir: string, cacheDir: string}} layout  from prepareLayout()
   */
  constructor({maxWorkers, memoryCacheMb}, layout) {
    this.layout = layout;
    this.memoryStore = memoryCacheMb > 0 ? new MemoryStore(memoryCacheMb * 1024 * 1024) : null;
    const baseConfig = createConfig({
      projectRoot: layout.workspace,
      cacheDir: layout.cacheDir,
      assetPlugins: [require.resolve('../assetPlugin.js')],
      reporter: stderrReporter(),
      maxWorkers,
    });
    this.config = {
      ...baseConfig,
      cacheVersion: toolchainCacheVersion(),
      cacheStores: [
        ...(this.memoryStore ? [this.memoryStore] : []),
        new AtomicFileStore(path.join(layout.cacheDir, 'metro-transform')),
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
    setAssetExtensions(this.config.resolver.assetExts);
    /** {server, bundler, deltaBundler, fileMap, feed} once start() has finished, else null. */
    this.running = null;
  }

  /** Metro ignores paths matching resolver.blockList (by default anything in a __tests__ directory). */
  isBlocked(file) {
    const blockList = this.config.resolver.blockList;
    const patterns = Array.isArray(blockList) ? blockList : [blockList];
    return patterns.some((pattern) => pattern instanceof RegExp && pattern.test(file));
  }

  async start() {
    const {workspace, cacheDir} = this.layout;
    const started = Date.now();
    const server = new Server(this.config, {watch: true});
    await server.ready();
    const bundler = server.getBundler();
    const depGraph = await bundler.getBundler().getDependencyGraph();
    const fileMap = depGraph.getWatcher();
    const feed = fileMapFeed();
    if (typeof feed !== 'function') {
      throw new Error('metro-file-map did not start watch mode; cannot feed it changes');
    }
    this.running = {server, bundler, deltaBundler: bundler.getDeltaBundler(), fileMap, feed};
    // Forget whatever a previous process left under apps/.
    feed({event: 'delete', root: workspace, relativePath: 'apps', clock: null});
    log(`Metro ready in ${Date.now() - started} ms (workspace ${workspace}, cache ${cacheDir})`);
  }

  /**
   * Make Metro's file map hold exactly the files now in appDir: drop the
   * directory, crawl it again and wait until the crawl is published (a "change"
   * event listing the entry file as added). Paths are relative to the workspace.
   */
  syncAppDir(appRelative, entryRelative, timeoutMs = 60000) {
    const {workspace} = this.layout;
    const {fileMap, feed} = this.running;
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
      feed({event: 'delete', root: workspace, relativePath: appRelative, clock: null});
      feed({event: 'recrawl', root: workspace, relativePath: appRelative, clock: null});
    });
  }

  forgetAppDir(appRelative) {
    if (this.running) {
      this.running.feed({event: 'delete', root: this.layout.workspace, relativePath: appRelative, clock: null});
    }
  }
}

module.exports = {MetroServer};
