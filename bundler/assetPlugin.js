'use strict';
/**
 * Metro asset plugin used by server.js: the long-lived bundler's projectRoot is
 * the workspace, and every app lives in <workspace>/apps/<slot>/. Metro names an
 * asset's URL after its directory relative to projectRoot
 * ("/assets/apps/<slot>/assets"); this plugin drops "apps/<slot>" so that the
 * bundle and the copied assets are exactly what `react-native bundle` produces
 * with the app directory as projectRoot ("/assets/assets"), whatever slot built
 * them. Runs wherever Metro computes asset data (transform and asset copying).
 * Its source is part of the transform cache key (server.js: cacheVersion).
 */
const path = require('path');

const APP_PREFIX = /^\/assets\/apps\/[^/]+(?=\/|$)/;
const NODE_MODULES = path.join(__dirname, 'node_modules');

module.exports = function hivesyncAssetPlugin(assetData) {
  const location = assetData.httpServerLocation;
  if (typeof location === 'string' && APP_PREFIX.test(location)) {
    return {...assetData, httpServerLocation: location.replace(APP_PREFIX, '/assets')};
  }
  // Assets of the toolchain's packages (e.g. react-native's LogBox images in
  // dev bundles) lie outside the workspace: Metro would name them
  // "/assets/../../<path to bundler>/node_modules/...". Name them as in an app
  // with its own node_modules, independent of where the bundler is installed.
  const dir = assetData.fileSystemLocation;
  if (typeof dir === 'string' && (dir === NODE_MODULES || dir.startsWith(NODE_MODULES + path.sep))) {
    const inside = path.relative(NODE_MODULES, dir).split(path.sep).join('/');
    return {...assetData, httpServerLocation: `/assets/node_modules${inside ? `/${inside}` : ''}`};
  }
  return assetData;
};
