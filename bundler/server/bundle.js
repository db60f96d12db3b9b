'use strict';
/**
 * One bundle from a started MetroServer: the dependency graph of an entry file,
 * serialized as `react-native bundle` does (module ids from 0, byte-identical
 * output), without the source map that Server#build always computes; plus the
 * data of the assets it uses.
 */
const path = require('path');

const Server = require('metro/private/Server').default;
const splitBundleOptions = require('metro/private/lib/splitBundleOptions').default;
const baseJSBundle = require('metro/private/DeltaBundler/Serializers/baseJSBundle').default;
const bundleToString = require('metro/private/lib/bundleToString').default;
const {internal} = require('./metroPatches');

for (const name of ['_resolveRelativePath', '_shouldAddModuleToIgnoreList', '_getModuleSourceUrl', '_getAssetsFromDependencies']) {
  internal(Server, name);
}
internal(require('metro/private/DeltaBundler').default, 'endGraph');

/**
 * The bundle for one entry: Server#build without the source map it always computes.
 * @returns {Promise<{code: string, assets: object[], timings: object}>}
 */
async function bundleEntry(metro, {entryPath, platform, dev, minify}) {
  const {config} = metro;
  const {server, bundler, deltaBundler} = metro.running;
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

module.exports = {bundleEntry};
