'use strict';
/**
 * stdout carries the protocol only. Loading this module sends anything else
 * that writes to process.stdout (console.log in Metro, Babel, saveAssets...)
 * to stderr; answers go out through writeProtocol(). log() writes to stderr.
 * server.js loads it before anything that could print.
 */

const protocolStream = process.stdout;
const writeProtocol = process.stdout.write.bind(process.stdout);
process.stdout.write = function writeToStderr(chunk, encoding, callback) {
  return process.stderr.write(chunk, encoding, callback);
};
protocolStream.on('error', (error) => {
  // The reader went away (EPIPE): nobody can receive answers any more.
  process.stderr.write(`[bundler] stdout closed (${error.code ?? error.message}); exiting\n`);
  process.exit(0);
});

function log(message) {
  process.stderr.write(`[bundler] ${message}\n`);
}

module.exports = {writeProtocol, log};
