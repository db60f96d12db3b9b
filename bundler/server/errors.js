'use strict';
/**
 * How a failed request is described in its answer's `error` (README.md,
 * "Protocol"): its type (syntax, resolution, transform, internal), the message
 * without ANSI colours and with server paths made relative to the app, and the
 * file, line and column (1-based) when known. Answers reach the app's author:
 * they never carry a stack trace or a server path (paths outside the app are
 * cut to their last part); the full error of an internal failure goes to
 * stderr (requestLoop.js), which the worker logs.
 *
 * Errors may carry hivesyncType/File/Line/Column (set where this process
 * raises them: the JSON check in metroPatches.js, a missing entry file in
 * build.js) and hivesyncSyntax (patch 4 of metroPatches.js, on Metro's
 * TransformError); RequestError is a request this process refuses.
 */
const fs = require('fs');
const path = require('path');

class RequestError extends Error {}

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;
const BUNDLER_DIR = path.join(__dirname, '..');
const NODE_MODULES_DIR = path.join(BUNDLER_DIR, 'node_modules');
// A stack frame line ("    at fn (/path/file.js:1:2)"); code frames start with a gutter instead.
const STACK_LINE = /^\s*at\s.*$/;
// The first parts of absolute paths on this machine: an absolute path left after the known
// directories are replaced is cut to its last part (a regex literal in user code is left alone).
let rootEntries = null;
function absolutePathPattern() {
  if (rootEntries === null) {
    try {
      rootEntries = fs.readdirSync('/').filter((name) => /^[A-Za-z0-9._-]+$/.test(name));
    } catch {
      rootEntries = [];
    }
  }
  if (rootEntries.length === 0) {
    return null;
  }
  const names = rootEntries.map((name) => name.replace(/\./g, '\\.')).join('|');
  const part = `[^\\s'"()\\[\\]{}<>,;:|/]`;
  return new RegExp(`(?<![\\w.:/-])/(?:${names})(?!${part})(?:/${part}*)*`, 'g');
}

/**
 * Metro's message with ANSI colours removed and server paths made relative to the app.
 * layout: {workspace, virtualDir} from prepareLayout().
 */
function cleanMessage(message, appDir, layout) {
  const {workspace, virtualDir, cacheDir} = layout;
  let text = String(message ?? '').replace(ANSI, '');
  const replacements = [];
  for (const dir of [appDir, virtualDir]) {
    if (dir) {
      replacements.push([dir + path.sep, ''], [path.relative(workspace, dir) + path.sep, '']);
    }
  }
  replacements.push(
    [path.relative(workspace, NODE_MODULES_DIR), 'node_modules'],
    [NODE_MODULES_DIR + path.sep, 'node_modules/'],
    [NODE_MODULES_DIR, 'node_modules'],
  );
  // Whatever else lies in the server's own directories (the workspace's out/, the cache).
  for (const dir of [workspace, cacheDir, BUNDLER_DIR]) {
    if (dir) {
      replacements.push([dir + path.sep, ''], [dir, '.']);
    }
  }
  for (const [from, to] of replacements) {
    text = text.split(from).join(to);
  }
  text = text
    .split('\n')
    .filter((line) => !STACK_LINE.test(line))
    .join('\n');
  const absolute = absolutePathPattern();
  if (absolute) {
    text = text.replace(absolute, (match) => path.basename(match) || '/');
  }
  return text.trimEnd();
}

/** A path (absolute or relative to the workspace, real or virtual slot) relative to appDir, or null. */
function relativeToApp(file, appDir, layout) {
  if (typeof file !== 'string' || !file || !appDir) {
    return null;
  }
  const {workspace, virtualDir} = layout;
  let absolute = path.isAbsolute(file) ? file : path.join(workspace, file);
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

/**
 * The answer's `error` object for any error thrown while handling a request.
 * appDir: the request's appDir as a real path, or null if it has none.
 */
function describeError(error, appDir, layout) {
  if (error instanceof RequestError) {
    return {type: 'internal', message: `Invalid request: ${error.message}`, file: null, line: null, column: null};
  }
  const message = cleanMessage(error?.message ?? error, appDir, layout);
  if (error && error.hivesyncType) {
    return {
      type: error.hivesyncType,
      message,
      file: relativeToApp(error.hivesyncFile, appDir, layout),
      line: error.hivesyncLine ?? null,
      column: error.hivesyncColumn ?? null,
    };
  }
  if (error && (error.type === 'UnableToResolveError' || error.constructor?.name === 'UnableToResolveError')) {
    const {line, column} = locationFromCodeFrame(message);
    return {type: 'resolution', message, file: relativeToApp(error.originModulePath, appDir, layout), line, column};
  }
  if (error && error.type === 'TransformError') {
    const file =
      relativeToApp(error.filename, appDir, layout) ??
      relativeToApp(/^(?:Error: )?([^\s:]+):/.exec(message)?.[1], appDir, layout);
    const hasLocation = typeof error.lineNumber === 'number' && error.lineNumber > 0;
    let line = hasLocation ? error.lineNumber : null;
    // Babel columns are 0-based; editors (and this protocol) count from 1.
    let column = hasLocation && typeof error.column === 'number' ? error.column + 1 : null;
    if (line == null) {
      ({line, column} = locationFromCodeFrame(message));
    }
    const snippet = error.snippet ? cleanMessage(error.snippet, appDir, layout) : '';
    return {
      type: error.hivesyncSyntax === true ? 'syntax' : 'transform',
      message: snippet && !message.includes(snippet) ? `${message}\n${snippet}` : message,
      file,
      line,
      column,
    };
  }
  // Metro's own failure: its message only (the stack, logged by requestLoop.js, stays here).
  return {
    type: 'internal',
    message: message.split('\n')[0] || 'Metro failed without a message',
    file: null,
    line: null,
    column: null,
  };
}

module.exports = {RequestError, cleanMessage, relativeToApp, locationFromCodeFrame, describeError};
