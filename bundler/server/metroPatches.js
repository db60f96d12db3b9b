'use strict';
/**
 * The changes this process makes to Metro's internals (metro/private/*), and
 * internal(), the start-up check that an internal this process relies on is
 * still there.
 *
 * applyMetroPatches(layout) must run before Metro's Server is created (server.js
 * calls it before it even loads ./metro.js). Afterwards fileMapFeed() gives the
 * file map's change callback that patch 1 captured, and MetroServer hands the
 * config's asset extensions to setAssetExtensions() for patch 3.
 */
const fs = require('fs');
const path = require('path');

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
const Transformer = require('metro/private/DeltaBundler/Transformer').default;
const WorkerFarm = require('metro/private/DeltaBundler/WorkerFarm').default;

let feedFileMap = null;
let assetExtensions = new Set();

/** The file map's onChange, captured by patch 1 once Metro's file map is built (null before). */
function fileMapFeed() {
  return feedFileMap;
}

function setAssetExtensions(extensions) {
  assetExtensions = new Set(extensions);
}

function applyMetroPatches({workspace, appsDir, virtualDir}) {
  internal(Watcher, 'watch');

  // 1. No file watching. The file map calls Watcher#watch(onChange) once it is
  //    built; keep onChange to feed it events ourselves instead of starting
  //    watcher backends (no inotify/fs.watch, no events we did not ask for).
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
      const prefix = workspace + path.sep;
      for (const byOrigin of previous.values()) {
        for (const originKey of byOrigin.keys()) {
          if (originKey === '' || originKey === workspace || originKey.startsWith(prefix)) {
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
  const originalTransformFile = internal(Transformer, 'transformFile');
  Transformer.prototype.transformFile = async function transformAppSourcesUnderOneSlot(filePath, transformOptions, fileBuffer) {
    if (fileBuffer == null && filePath.startsWith(appsDir + path.sep)) {
      const inApps = filePath.slice(appsDir.length + 1);
      const slotEnd = inApps.indexOf(path.sep);
      if (slotEnd > 0 && !assetExtensions.has(path.extname(filePath).slice(1))) {
        const content = await fs.promises.readFile(filePath);
        if (filePath.endsWith('.json')) {
          checkJson(filePath, content);
        }
        const virtualPath = path.join(virtualDir, inApps.slice(slotEnd + 1));
        return originalTransformFile.call(this, virtualPath, transformOptions, content);
      }
    }
    return originalTransformFile.call(this, filePath, transformOptions, fileBuffer);
  };

  // 4. Tell syntax errors from other transform errors: Metro turns every Babel
  //    error into a TransformError; remember whether the parser raised it.
  const originalFormatBabelError = internal(WorkerFarm, '_formatBabelError');
  WorkerFarm.prototype._formatBabelError = function markSyntaxErrors(error, filename) {
    const formatted = originalFormatBabelError.call(this, error, filename);
    formatted.hivesyncSyntax =
      error?.name === 'SyntaxError' || error?.type === 'SyntaxError' || error?.code === 'BABEL_PARSER_SYNTAX_ERROR';
    return formatted;
  };
}

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

module.exports = {internal, applyMetroPatches, fileMapFeed, setAssetExtensions};
