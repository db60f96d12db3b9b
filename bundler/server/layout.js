'use strict';
/**
 * The directories this process works in (README.md, "Directory layout rules"):
 * the workspace (Metro's projectRoot), its apps/ (one slot directory per
 * build's sources) and the transform cache dir, all as real paths; the rule
 * for slot names; and the virtual slot that app sources are transformed under.
 */
const fs = require('fs');
const path = require('path');

const SLOT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

// App sources are transformed as if they lay in this slot, whatever their real
// slot (why: metroPatches.js, patch 3). '@' is not allowed in slot names.
const VIRTUAL_SLOT = '@app';

/**
 * Creates the workspace's apps/ and the cache dir if missing.
 * @returns {{workspace: string, appsDir: string, cacheDir: string, virtualDir: string}}
 */
function prepareLayout({workspace, cacheDir}) {
  fs.mkdirSync(path.join(workspace, 'apps'), {recursive: true});
  fs.mkdirSync(cacheDir, {recursive: true});
  // Real paths: Metro's file map works on canonical paths.
  const workspaceReal = fs.realpathSync(workspace);
  const appsDir = path.join(workspaceReal, 'apps');
  return {
    workspace: workspaceReal,
    appsDir,
    cacheDir: fs.realpathSync(cacheDir),
    virtualDir: path.join(appsDir, VIRTUAL_SLOT),
  };
}

module.exports = {SLOT_NAME, VIRTUAL_SLOT, prepareLayout};
