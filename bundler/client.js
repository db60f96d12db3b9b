'use strict';
/**
 * A minimal client for server.js (used by selfcheck.js and measure.js; the
 * Python side speaks the same protocol): spawn the server, send requests, get
 * each answer by id.
 */
const {spawn} = require('child_process');
const fs = require('fs');
const path = require('path');
const readline = require('readline');

class BundlerClient {
  /**
   * @param {{workspace: string, cacheDir: string, args?: string[], stderr?: 'inherit'|'ignore'|string}} options
   *   stderr: 'inherit', 'ignore' or a file path to append the server's stderr to;
   *   nodeArgs: options for node itself (e.g. --max-old-space-size=512).
   */
  constructor({workspace, cacheDir, args = [], nodeArgs = [], stderr = 'ignore'}) {
    let stderrTarget = stderr;
    if (stderr !== 'inherit' && stderr !== 'ignore') {
      stderrTarget = fs.openSync(stderr, 'a');
    }
    this.child = spawn(
      process.execPath,
      [...nodeArgs, path.join(__dirname, 'server.js'), '--workspace', workspace, '--cache-dir', cacheDir, ...args],
      {stdio: ['pipe', 'pipe', stderrTarget]},
    );
    this.pending = new Map();
    this.nextId = 1;
    this.lines = [];
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        for (const {reject} of this.pending.values()) {
          reject(new Error(`bundler exited (${code ?? signal}) before answering`));
        }
        this.pending.clear();
        resolve({code, signal});
      });
    });
    readline.createInterface({input: this.child.stdout}).on('line', (line) => {
      this.lines.push(line);
      let response;
      try {
        response = JSON.parse(line);
      } catch {
        throw new Error(`bundler wrote a line that is not JSON: ${line}`);
      }
      const waiter = this.pending.get(response.id);
      if (!waiter) {
        throw new Error(`answer for unknown id ${response.id}: ${line}`);
      }
      this.pending.delete(response.id);
      waiter.resolve(response);
    });
  }

  get pid() {
    return this.child.pid;
  }

  /** Sends one request (an id is added when missing) and resolves with its answer. */
  request(body) {
    const request = {id: `r${this.nextId++}`, ...body};
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, {resolve, reject});
      this.child.stdin.write(JSON.stringify(request) + '\n');
    });
  }

  ping() {
    return this.request({type: 'ping'});
  }

  build(fields) {
    return this.request({type: 'build', entryFile: 'index.js', dev: false, minify: true, ...fields});
  }

  /** Peak resident memory of the server process so far (Linux), in bytes. */
  peakRssBytes() {
    try {
      const status = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
      const match = /VmHWM:\s+(\d+) kB/.exec(status);
      return match ? Number(match[1]) * 1024 : null;
    } catch {
      return null;
    }
  }

  /** Closes stdin (the server answers what it was asked, then exits). */
  async close() {
    this.child.stdin.end();
    return this.exited;
  }
}

module.exports = {BundlerClient};
