'use strict';
/**
 * Validation of a build request's fields (README.md, "Protocol" and "Directory
 * layout rules"). Whatever is wrong is thrown as a RequestError, answered as an
 * `internal` error whose message starts with "Invalid request:".
 */
const fs = require('fs');
const path = require('path');

const {RequestError} = require('./errors');
const {SLOT_NAME} = require('./layout');

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

/**
 * The build's fields, checked; appDir as a real path, entryFile normalized.
 * @param {object} request  the parsed request line
 * @param {import('./metro').MetroServer} metro  for the apps/ directory and Metro's blockList
 */
function validateBuild(request, metro) {
  const appsDir = metro.layout.appsDir;
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
  if (path.dirname(appDirReal) !== appsDir || !SLOT_NAME.test(path.basename(appDirReal))) {
    throw new RequestError(
      `appDir must be ${appsDir}${path.sep}<slot> (slot: letters, digits, '.', '_', '-'), got ${appDir}`,
    );
  }
  if (metro.isBlocked(path.join(appDirReal, 'index.js'))) {
    throw new RequestError(`appDir ${appDir} is a path Metro ignores (resolver.blockList)`);
  }
  if (!fs.statSync(appDirReal).isDirectory()) {
    throw new RequestError(`appDir ${appDir} is not a directory`);
  }
  const entryFile = requireString(request, 'entryFile');
  if (path.isAbsolute(entryFile) || entryFile.split(/[\\/]/).some((part) => part === '..')) {
    throw new RequestError('"entryFile" must be a path relative to appDir, without ".."');
  }
  if (metro.isBlocked(path.join(appDirReal, entryFile))) {
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

module.exports = {validateBuild};
