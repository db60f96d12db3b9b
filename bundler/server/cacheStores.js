'use strict';
/**
 * The transform cache stores: an in-memory LRU (MemoryStore) in front of a
 * disk store in --cache-dir (AtomicFileStore). Metro reads them in that order
 * and writes a result to the stores in front of the one that had it (to both
 * after a transform).
 */
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

/** Same on-disk format as metro-cache's FileStore, but writes are atomic (temp
 *  file + rename) so that several bundler processes can share a cache dir. */
class AtomicFileStore {
  constructor(root) {
    this.root = root;
    this.name = 'AtomicFileStore';
  }
  filePath(key) {
    return path.join(this.root, key.subarray(0, 1).toString('hex'), key.subarray(1).toString('hex'));
  }
  async get(key) {
    try {
      const file = this.filePath(key);
      const data = await fs.promises.readFile(file);
      // Entries in use keep a recent mtime, so pruning by age (README) only
      // removes what no process has read for a while.
      const now = new Date();
      fs.promises.utimes(file, now, now).catch(() => {});
      if (data[0] === 0) {
        return data.subarray(1);
      }
      return JSON.parse(data.toString('utf8'));
    } catch (error) {
      if (error.code === 'ENOENT' || error instanceof SyntaxError) {
        return null;
      }
      throw error;
    }
  }
  async set(key, value) {
    const target = this.filePath(key);
    const content =
      value instanceof Buffer ? Buffer.concat([Buffer.from([0]), value]) : (JSON.stringify(value) ?? 'null');
    const temp = `${target}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
    try {
      await fs.promises.writeFile(temp, content);
    } catch (error) {
      if (error.code !== 'ENOENT') {
        throw error;
      }
      await fs.promises.mkdir(path.dirname(target), {recursive: true});
      await fs.promises.writeFile(temp, content);
    }
    await fs.promises.rename(temp, target);
  }
  clear() {}
}

function deepFreeze(value) {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !ArrayBuffer.isView(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) {
      deepFreeze(value[key]);
    }
  }
  return value;
}

/**
 * The in-memory copy of a transform result drops what only source maps use
 * (this server writes none): the per-module mappings are most of a result's
 * memory. The FileStore on disk keeps the full result.
 */
function withoutSourceMaps(value) {
  if (value === null || typeof value !== 'object' || value instanceof Buffer || !Array.isArray(value.output)) {
    return value;
  }
  return {
    ...value,
    output: value.output.map((output) =>
      output && output.data ? {...output, data: {...output.data, map: [], functionMap: null}} : output,
    ),
  };
}

/** Rough heap bytes of a (source-map-free) transform result. */
function approximateSize(value) {
  if (value instanceof Buffer) {
    return value.length;
  }
  let size = 0;
  for (const output of value?.output ?? []) {
    size += (output?.data?.code?.length ?? 0) + 200;
  }
  for (const dependency of value?.dependencies ?? []) {
    size += 300 + (dependency?.data?.locs?.length ?? 0) * 150;
  }
  return size + 500;
}

/** LRU of transform results. Values are frozen: Metro must never mutate them. */
class MemoryStore {
  constructor(maxBytes) {
    this.name = 'MemoryStore';
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.entries = new Map();
  }
  get(key) {
    const id = key.toString('binary');
    const entry = this.entries.get(id);
    if (entry === undefined) {
      return null;
    }
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.value;
  }
  set(key, fullValue) {
    const id = key.toString('binary');
    // A JSON round trip (what the FileStore stores anyway) leaves flat strings
    // that share nothing with the transformer's intermediate strings: less
    // memory, and concatenating modules into a bundle is ~3x faster.
    const stripped = withoutSourceMaps(fullValue);
    const value = stripped instanceof Buffer ? stripped : JSON.parse(JSON.stringify(stripped));
    const size = approximateSize(value);
    if (size > this.maxBytes) {
      return;
    }
    const previous = this.entries.get(id);
    if (previous !== undefined) {
      this.bytes -= previous.size;
      this.entries.delete(id);
    }
    this.entries.set(id, {value: deepFreeze(value), size});
    this.bytes += size;
    for (const [oldId, oldEntry] of this.entries) {
      if (this.bytes <= this.maxBytes) {
        break;
      }
      this.entries.delete(oldId);
      this.bytes -= oldEntry.size;
    }
  }
  clear() {
    this.entries.clear();
    this.bytes = 0;
  }
}

module.exports = {AtomicFileStore, MemoryStore};
