'use strict';
/**
 * The command line (README.md, "Running"):
 *   --workspace <ABS DIR> --cache-dir <ABS DIR> [--max-workers N] [--memory-cache-mb N]
 * parseArgs() throws an Error saying what is wrong; server.js prints USAGE with it.
 */
const path = require('path');

const USAGE =
  'usage: node server.js --workspace <ABS DIR> --cache-dir <ABS DIR> [--max-workers N] [--memory-cache-mb N]';

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

module.exports = {USAGE, parseArgs};
