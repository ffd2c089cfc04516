// auditor.js: checks a kms audit log in the browser, against a verifier key
// the auditor pastes, and lets them browse its entries (docs/auditor-page.md).
//
// The formats are those of docs/audit-log.md, cited by section below:
//   2  hashing (RFC 6962: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || l || r))
//   4  hash tiles     tile/<L>/<N>[.p/<W>]: W hashes of 32 bytes
//   5  entry bundles  tile/entries/<N>[.p/<W>]: W times (u16 big-endian length, entry)
//   6  checkpoint     origin, size, base64 root: three lines
//   7  signed note    body, blank line, "— <name> base64(key id || Ed25519 signature)" lines;
//                     verifier key <name>+<key id hex>+base64(0x01 || public key)
//
// Every byte fetched is treated as hostile: parsed strictly, bounded, and
// shown with textContent only. Any failure anywhere ends the run with
// "FAILED: ..." and nothing shown as verified (fail closed): the status says
// "Verified" only once the signature, every entry bundle, every hash tile
// and the root have all been checked.
'use strict';

(function () {
  const TILE_WIDTH = 256;            // hashes per full tile, entries per full bundle
  const HASH_SIZE = 32;
  const ENTRY_MAX = 65535;           // section 5: entries are 1..65,535 bytes
  const NOTE_MAX = 1 << 20;          // section 7: a note is at most 1 MiB
  const SIGNATURES_MAX = 100;        // section 7: at most 100 signature lines
  const ORIGIN_MAX = 1024;           // section 6
  // The most entries this page verifies (its memory holds them all; the
  // proof arithmetic below uses 32-bit integer operations). Larger logs:
  // kms-admin audit verify.
  const SIZE_MAX = 2000000;
  const FETCH_MS = 30000;            // each file: read within 30 s or fail
  const PARALLEL = 4;                // files read at once
  const ROWS_MAX = 1000;             // table rows drawn at once

  // ---- failures ----

  // A check that did not pass; its message is shown as "FAILED: <message>".
  class Failure extends Error {}
  function fail(message) {
    throw new Failure(message);
  }

  // ---- bytes ----

  const encoder = new TextEncoder();

  function utf8Decode(bytes, what) {
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch (e) {
      fail(what + ' is not valid UTF-8');
    }
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function base64Encode(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }

  // Standard base64 with padding (RFC 4648 section 4), canonical only: the
  // string must be exactly what encoding its bytes gives back (section 7).
  function base64Decode(text, what) {
    if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) fail(what + ' is not base64');
    let bytes;
    try {
      bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    } catch (e) {
      fail(what + ' is not base64');
    }
    if (base64Encode(bytes) !== text) fail(what + ' is not canonical base64');
    return bytes;
  }

  // ---- hashing (section 2) ----

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  }
  const leafHash = (entry) => sha256(concat([0x00], entry));
  const nodeHash = (left, right) => sha256(concat([0x01], left, right));

  // Every level of the RFC 6962 tree over leaves, bottom up: each level
  // pairs the one below left to right, and an unpaired last node moves up
  // as it is. levels[k][j] is then the root of entries [j * 2^k, (j+1) * 2^k)
  // whenever that range is complete, and the last level holds the root.
  async function treeLevels(leaves) {
    const levels = [leaves];
    for (let cur = leaves; cur.length > 1; ) {
      const pairs = Array.from({ length: Math.ceil(cur.length / 2) }, (_, i) =>
        2 * i + 1 < cur.length ? nodeHash(cur[2 * i], cur[2 * i + 1]) : cur[2 * i]);
      cur = await Promise.all(pairs);
      levels.push(cur);
    }
    return levels;
  }

  // The root of 2^k hashes side by side: a complete subtree.
  async function completeRoot(hashes) {
    while (hashes.length > 1) {
      const pairs = [];
      for (let i = 0; i < hashes.length; i += 2) pairs.push(nodeHash(hashes[i], hashes[i + 1]));
      hashes = await Promise.all(pairs);
    }
    return hashes[0];
  }

  // ---- the verifier key and the signed note (section 7) ----

  // A key name: non-empty, no space of any kind, no '+', no control character.
  function validKeyName(name) {
    return name !== '' && !/[\s+\u0000-\u001f\u007f]/u.test(name);
  }

  async function keyId(name, publicKey) {
    const digest = await sha256(concat(encoder.encode(name), [0x0a, 0x01], publicKey));
    return digest.slice(0, 4);
  }

  // "<name>+<8 hex digits>+<base64(0x01 || 32-byte Ed25519 key)>", the key
  // id checked against the name and the key.
  async function parseVerifierKey(text) {
    const s = text.trim();
    const plus1 = s.indexOf('+');
    const plus2 = s.indexOf('+', plus1 + 1);
    if (plus1 <= 0 || plus2 < 0) fail('the verifier key is not NAME+ID+KEY: paste what kms-admin audit key prints');
    const name = s.slice(0, plus1);
    const idHex = s.slice(plus1 + 1, plus2);
    if (!validKeyName(name)) fail('the verifier key\'s name is not a valid key name');
    if (!/^[0-9a-f]{8}$/.test(idHex)) fail('the verifier key\'s id is not 8 lowercase hex digits');
    const key = base64Decode(s.slice(plus2 + 1), 'the verifier key');
    if (key.length !== 33 || key[0] !== 0x01) fail('the verifier key is not an Ed25519 key (type 0x01, 32 bytes)');
    const publicKey = key.slice(1);
    const id = await keyId(name, publicKey);
    if (hex(id) !== idHex) {
      fail('the verifier key\'s id ' + idHex + ' does not match its name and public key (' + hex(id) +
           '): it was mistyped or altered');
    }
    return { name, id, idHex, publicKey, text: s };
  }

  // Opens the note: returns its body once the signature line of key vk
  // (same name, same key id) verifies over the body's bytes.
  async function openNote(bytes, vk) {
    if (bytes.length > NOTE_MAX) fail('checkpoint: larger than 1 MiB');
    const text = utf8Decode(bytes, 'checkpoint');
    if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text)) fail('checkpoint: holds a control character');
    if (!text.endsWith('\n')) fail('checkpoint: does not end in a newline');
    const blank = text.lastIndexOf('\n\n');
    if (blank < 0) fail('checkpoint: has no signature (no blank line)');
    const body = text.slice(0, blank + 1);
    const lines = text.slice(blank + 2).split('\n');
    lines.pop(); // the text ends in a newline
    if (lines.length === 0) fail('checkpoint: has no signature line');
    if (lines.length > SIGNATURES_MAX) fail('checkpoint: more than 100 signature lines');
    let signature = null;
    const signers = [];
    lines.forEach((line, i) => {
      const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
      if (!m || !validKeyName(m[1])) fail('checkpoint: signature line ' + (i + 1) + ' is malformed');
      const sig = base64Decode(m[2], 'checkpoint: signature line ' + (i + 1));
      if (sig.length < 5) fail('checkpoint: signature line ' + (i + 1) + ' is too short');
      signers.push(m[1] + '+' + hex(sig.slice(0, 4)));
      if (signature === null && m[1] === vk.name && sameBytes(sig.slice(0, 4), vk.id)) signature = sig.slice(4);
    });
    const keyName = vk.name + '+' + vk.idHex;
    if (signature === null) fail('the checkpoint is not signed by key ' + keyName + ' (signed by ' + signers.join(', ') + ')');
    if (signature.length !== 64) fail('the checkpoint\'s signature by key ' + keyName + ' is not 64 bytes');
    let key;
    try {
      key = await crypto.subtle.importKey('raw', vk.publicKey, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      fail('this browser cannot verify Ed25519 signatures (WebCrypto Ed25519: Chromium 137, Firefox 129, Safari 17 or later)');
    }
    const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, encoder.encode(body));
    if (!ok) fail('the checkpoint\'s signature does not verify with key ' + keyName);
    return body;
  }

  // ---- the checkpoint (section 6) ----

  function parseCheckpoint(body) {
    const lines = body.split('\n');
    lines.pop(); // the body ends in a newline
    if (lines.length < 3) fail('checkpoint: fewer than three lines');
    const [origin, sizeText, rootText] = lines;
    if (origin === '' || encoder.encode(origin).length > ORIGIN_MAX) fail('checkpoint: the origin is empty or too long');
    if (lines.slice(3).some((l) => l === '')) fail('checkpoint: an empty extension line');
    if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) fail('checkpoint: the tree size is not a decimal number');
    const size = Number(sizeText);
    const root = base64Decode(rootText, 'checkpoint: the root hash');
    if (root.length !== HASH_SIZE) fail('checkpoint: the root hash is not 32 bytes');
    return { origin, size, root };
  }

  // ---- file names (section 4) ----

  // <N> in 3-digit groups, each but the last prefixed with "x".
  function indexPath(n) {
    let path = String(n % 1000).padStart(3, '0');
    for (n = Math.floor(n / 1000); n > 0; n = Math.floor(n / 1000)) {
      path = 'x' + String(n % 1000).padStart(3, '0') + '/' + path;
    }
    return path;
  }
  const widthSuffix = (width) => (width < TILE_WIDTH ? '.p/' + width : '');
  const tilePath = (level, index, width) => 'tile/' + level + '/' + indexPath(index) + widthSuffix(width);
  const bundlePath = (index, width) => 'tile/entries/' + indexPath(index) + widthSuffix(width);

  // Hashes at tile level L in a tree of size n: floor(n / 256^L).
  const levelCount = (n, level) => Math.floor(n / Math.pow(TILE_WIDTH, level));
  const tileWidth = (count, index) => Math.min(TILE_WIDTH, count - index * TILE_WIDTH);

  // ---- fetching ----

  // One published file, relative to this page (so the page works under any
  // prefix that serves the files beside it). Never from a cache: the
  // auditor checks what the server serves now.
  async function fetchFile(path, maxBytes) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_MS);
    try {
      let response;
      try {
        response = await fetch(path, { cache: 'no-store', credentials: 'omit', redirect: 'error', signal: abort.signal });
      } catch (e) {
        fail(path + ': could not be read (' + e.message + ')');
      }
      if (response.status === 404) fail(path + ': missing (HTTP 404)');
      if (response.status !== 200) fail(path + ': HTTP status ' + response.status);
      let bytes;
      try {
        bytes = new Uint8Array(await response.arrayBuffer());
      } catch (e) {
        fail(path + ': could not be read (' + e.message + ')');
      }
      if (bytes.length > maxBytes) fail(path + ': ' + bytes.length + ' bytes, more than ' + maxBytes);
      return bytes;
    } finally {
      clearTimeout(timer);
    }
  }

  // fn(0) ... fn(n - 1), at most `limit` at once, results in order; the
  // first failure ends it.
  async function mapLimit(n, limit, fn) {
    const out = new Array(n);
    let next = 0;
    let failed = false;
    async function worker() {
      while (next < n && !failed) {
        const i = next++;
        try {
          out[i] = await fn(i);
        } catch (e) {
          failed = true;
          throw e;
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
    return out;
  }

  // A hash tile of `width` hashes, its length checked.
  async function fetchTile(level, index, width) {
    const path = tilePath(level, index, width);
    const bytes = await fetchFile(path, width * HASH_SIZE);
    if (bytes.length !== width * HASH_SIZE) fail(path + ': ' + bytes.length + ' bytes, expected ' + width * HASH_SIZE);
    return { path, bytes, hash: (i) => bytes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE) };
  }

  // ---- entry bundles (section 5) and entries (docs/audit-log.md section 1) ----

  // Exactly `width` entries, each 1..65,535 bytes, no trailing bytes.
  function parseBundle(bytes, width, path) {
    const entries = [];
    let at = 0;
    while (at < bytes.length) {
      if (entries.length === width) fail(path + ': more than ' + width + ' entries');
      if (bytes.length - at < 2) fail(path + ': a length cut short at byte ' + at);
      const len = (bytes[at] << 8) | bytes[at + 1];
      at += 2;
      if (len === 0) fail(path + ': entry ' + entries.length + ' is empty');
      if (bytes.length - at < len) fail(path + ': entry ' + entries.length + ' is cut short');
      entries.push(bytes.subarray(at, at + len));
      at += len;
    }
    if (entries.length !== width) fail(path + ': ' + entries.length + ' entries, expected ' + width);
    return entries;
  }

  // An entry must be a JSON object (what kmsd writes).
  function parseEntry(bytes, index, path) {
    const where = 'entry ' + index + ' (' + path + ')';
    let value;
    try {
      value = JSON.parse(utf8Decode(bytes, where));
    } catch (e) {
      if (e instanceof Failure) throw e;
      fail(where + ' is not JSON');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(where + ' is not a JSON object');
    return value;
  }

  async function readEntries(size, progress) {
    const bundles = Math.ceil(size / TILE_WIDTH);
    let done = 0;
    const parts = await mapLimit(bundles, PARALLEL, async (k) => {
      const width = tileWidth(size, k);
      const path = bundlePath(k, width);
      const raw = parseBundle(await fetchFile(path, width * (2 + ENTRY_MAX)), width, path);
      progress('Reading entry bundles: ' + ++done + ' of ' + bundles);
      return raw.map((bytes, i) => ({ index: k * TILE_WIDTH + i, bytes, path, json: null }));
    });
    return parts.flat();
  }

  // ---- the whole check ----

  // Every hash tile of the tree of size n compared with the levels rebuilt
  // from the entries. Returns the first difference, or null.
  async function compareTiles(n, levels, progress) {
    const wanted = [];
    for (let level = 0; levelCount(n, level) > 0; level++) {
      const count = levelCount(n, level);
      for (let index = 0; index * TILE_WIDTH < count; index++) wanted.push({ level, index, width: tileWidth(count, index) });
    }
    let done = 0;
    const differences = await mapLimit(wanted.length, PARALLEL, async (i) => {
      const { level, index, width } = wanted[i];
      const tile = await fetchTile(level, index, width);
      progress('Reading hash tiles: ' + ++done + ' of ' + wanted.length);
      for (let j = 0; j < width; j++) {
        // Hash j of tile (L, N) is node N*256 + j at tree level 8L (section 4).
        if (!sameBytes(tile.hash(j), levels[8 * level][index * TILE_WIDTH + j])) return { level, path: tile.path, hash: j, position: index * TILE_WIDTH + j };
      }
      return null;
    });
    return { tiles: wanted.length, difference: differences.find((d) => d) || null };
  }

  // Checks the log served beside this page against the verifier key text.
  // Returns what was verified, or throws (Failure or anything else: both
  // end the run as FAILED).
  async function verifyLog(keyText, progress) {
    if (!window.crypto || !crypto.subtle) fail('this page needs WebCrypto: open it over https:// or on localhost');
    const vk = await parseVerifierKey(keyText);
    progress('Reading the checkpoint');
    const body = await openNote(await fetchFile('checkpoint', NOTE_MAX), vk);
    const cp = parseCheckpoint(body);
    if (cp.origin !== vk.name) fail('the checkpoint\'s origin ' + cp.origin + ' is not the key\'s name ' + vk.name);
    if (cp.size > SIZE_MAX) fail('the checkpoint has ' + cp.size + ' entries: this page verifies at most ' + SIZE_MAX + ' (use kms-admin audit verify)');

    const entries = await readEntries(cp.size, progress);
    progress('Hashing ' + cp.size + ' entries');
    const leaves = await Promise.all(entries.map((e) => leafHash(e.bytes)));
    const levels = await treeLevels(leaves);
    const root = cp.size === 0 ? await sha256(new Uint8Array(0)) : levels[levels.length - 1][0];
    const { tiles, difference } = await compareTiles(cp.size, levels, progress);

    // The signed root decides which of the entries and the tiles is at
    // fault where they disagree (as kms-admin audit verify does).
    if (!sameBytes(root, cp.root)) {
      if (difference && difference.level === 0) {
        const e = entries[difference.position];
        fail('entry ' + e.index + ' in ' + e.path + ' differs from the signed tree (hash ' + difference.hash + ' of ' + difference.path + ')');
      }
      fail('the root rebuilt from the entries (' + base64Encode(root) + ') differs from the checkpoint\'s (' + base64Encode(cp.root) + ')');
    }
    if (difference) fail(difference.path + ': hash ' + difference.hash + ' differs from the signed tree');
    // Signed, and still each must be what kmsd writes.
    for (const e of entries) e.json = parseEntry(e.bytes, e.index, e.path);
    return { vk, cp, entries, bundles: Math.ceil(cp.size / TILE_WIDTH), tiles };
  }

  // ---- inclusion proofs from the hash tiles (section 4; RFC 9162 2.1.3) ----

  const isPowerOfTwo = (n) => n > 0 && (n & (n - 1)) === 0;
  function largestPowerOfTwoBelow(n) {
    let k = 1;
    while (k * 2 < n) k *= 2;
    return k;
  }

  // The tiles a proof reads, each fetched once.
  function tileReader(n) {
    const cache = new Map();
    return (level, index) => {
      const key = level + '/' + index;
      if (!cache.has(key)) cache.set(key, fetchTile(level, index, tileWidth(levelCount(n, level), index)));
      return cache.get(key);
    };
  }

  // The root of the complete subtree of 2^h entries from entry `start` (a
  // multiple of 2^h): 2^(h mod 8) adjacent hashes of one tile at level
  // floor(h / 8), hashed together.
  async function subtreeFromTiles(readTile, n, h, start) {
    const level = Math.floor(h / 8);
    const span = 1 << (h % 8);
    const first = (start / Math.pow(2, h)) * span; // node index at tree level 8 * level
    const tile = await readTile(level, Math.floor(first / TILE_WIDTH));
    const offset = first % TILE_WIDTH;
    if (offset + span > tile.bytes.length / HASH_SIZE) fail(tile.path + ': too short for the proof');
    return completeRoot(Array.from({ length: span }, (_, i) => tile.hash(offset + i)));
  }

  // MTH(D[start:end]) from the tiles, split as RFC 6962 splits it.
  async function rangeFromTiles(readTile, n, start, end) {
    const len = end - start;
    if (isPowerOfTwo(len) && start % len === 0) return subtreeFromTiles(readTile, n, Math.log2(len), start);
    const k = largestPowerOfTwoBelow(len);
    return nodeHash(await rangeFromTiles(readTile, n, start, start + k), await rangeFromTiles(readTile, n, start + k, end));
  }

  // PATH(m, D[start:end]) of RFC 9162 section 2.1.3.1, leaf side first.
  async function inclusionPath(readTile, n, m, start, end) {
    const len = end - start;
    if (len <= 1) return [];
    const k = largestPowerOfTwoBelow(len);
    if (m - start < k) {
      const path = await inclusionPath(readTile, n, m, start, start + k);
      return path.concat([await rangeFromTiles(readTile, n, start + k, end)]);
    }
    const path = await inclusionPath(readTile, n, m, start + k, end);
    return path.concat([await rangeFromTiles(readTile, n, start, start + k)]);
  }

  // RFC 9162 section 2.1.3.2: does `proof` take leaf to root? (Sizes are at
  // most SIZE_MAX: 32-bit integer operations are exact.)
  async function verifyInclusion(index, size, leaf, proof, root) {
    if (index >= size) return false;
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    for (const p of proof) {
      if (sn === 0) return false;
      if ((fn & 1) === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1) === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1;
      sn >>= 1;
    }
    return sn === 0 && sameBytes(r, root);
  }

  async function proveEntry(verified, index) {
    const { cp, entries } = verified;
    const readTile = tileReader(cp.size);
    const proof = await inclusionPath(readTile, cp.size, index, 0, cp.size);
    const leaf = await leafHash(entries[index].bytes);
    const ok = await verifyInclusion(index, cp.size, leaf, proof, cp.root);
    if (!ok) fail('entry ' + index + ' is not included in the checkpoint of size ' + cp.size + ' by the proof the hash tiles give');
    return proof;
  }

  // ---- the page ----

  const $ = (id) => document.getElementById(id);
  const state = { run: 0, verified: null };

  // Shows a status line: state is idle, working, verified or failed (the
  // data-state attribute, and the look, follow it).
  function setStatus(el, stateName, text) {
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function failureText(e) {
    if (e instanceof Failure) return 'FAILED: ' + e.message;
    return 'FAILED: internal error while checking (' + String(e && e.message ? e.message : e) + ')';
  }

  // Forgets whatever was verified: nothing stays on screen as verified once
  // the key changes or a new check starts.
  function reset(text) {
    state.run++;
    state.verified = null;
    $('entries-box').hidden = true;
    $('checkpoint').hidden = true;
    $('rows').replaceChildren();
    $('entry-json').hidden = true;
    setStatus($('proof'), 'idle', '');
    setStatus($('status'), 'idle', text);
  }

  async function onVerify() {
    reset('');
    const run = state.run;
    const status = $('status');
    const progress = (text) => {
      if (run === state.run) setStatus(status, 'working', text + ' ...');
    };
    progress('Checking');
    try {
      const verified = await verifyLog($('vkey').value, progress);
      if (run !== state.run) return;
      state.verified = verified;
      showVerified(verified);
    } catch (e) {
      if (run !== state.run) return;
      setStatus(status, 'failed', failureText(e));
    }
  }

  function showVerified(v) {
    const { cp, vk } = v;
    $('cp-origin').textContent = cp.origin;
    $('cp-size').textContent = String(cp.size);
    $('cp-root').textContent = base64Encode(cp.root);
    $('cp-checked').textContent = 'signature by ' + vk.name + '+' + vk.idHex + '; ' + v.bundles + ' entry bundle(s), ' +
      v.tiles + ' hash tile(s), the root';
    $('checkpoint').hidden = false;
    fillChoices(v.entries);
    $('entries-box').hidden = false;
    render();
    setStatus($('status'), 'verified', 'Verified: ' + cp.size + ' entries, checkpoint signed by ' + vk.name + '+' + vk.idHex +
      ', every bundle and tile matches the signed root.');
  }

  // ---- the table ----

  // A member as text: a string as it is, anything else as JSON, absent "".
  function text(entry, member) {
    const v = entry[member];
    if (v === undefined) return '';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  function decision(entry) {
    const a = entry.authz;
    return a && typeof a === 'object' && typeof a.decision === 'string' ? a.decision : '';
  }

  // The keys an entry names: key_id and a batch's batch_keys.
  function keysOf(entry) {
    const keys = [text(entry, 'key_id')];
    if (Array.isArray(entry.batch_keys)) for (const k of entry.batch_keys) if (typeof k === 'string') keys.push(k);
    return keys.filter((k) => k !== '');
  }

  function fillChoices(entries) {
    const lists = { principal: new Set(), key: new Set(), operation: new Set(), status: new Set() };
    for (const e of entries) {
      lists.principal.add(text(e.json, 'principal'));
      keysOf(e.json).forEach((k) => lists.key.add(k));
      lists.operation.add(text(e.json, 'operation'));
      lists.status.add(text(e.json, 'status'));
    }
    for (const [name, values] of Object.entries(lists)) {
      const options = Array.from(values).filter((v) => v !== '').sort().map((v) => {
        const o = document.createElement('option');
        o.value = v;
        return o;
      });
      $('l-' + name).replaceChildren(...options);
    }
  }

  // A time bound as typed: an RFC 3339 UTC time or a prefix of one
  // ("2026-11-28", "2026-11-28T00:13"). Entry times have one fixed form
  // (section 1), so comparing the strings compares the times, and a prefix
  // compares as its earliest instant.
  function timeBound(id) {
    const v = $(id).value.trim().replace(/Z$/, '');
    if (v === '') return '';
    if (!/^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?)?)?)?$/.test(v)) return null;
    return v;
  }

  function filters() {
    const from = timeBound('f-from');
    const until = timeBound('f-until');
    if (from === null || until === null) return null;
    const exact = (id) => $(id).value.trim();
    return { from, until, principal: exact('f-principal'), key: exact('f-key'), operation: exact('f-operation'), status: exact('f-status') };
  }

  function matches(entry, f) {
    const time = text(entry, 'time');
    if (f.from && time < f.from) return false;
    if (f.until && time >= f.until) return false;
    if (f.principal && text(entry, 'principal') !== f.principal) return false;
    if (f.key && !keysOf(entry).includes(f.key)) return false;
    if (f.operation && text(entry, 'operation') !== f.operation) return false;
    if (f.status && text(entry, 'status') !== f.status) return false;
    return true;
  }

  function cell(value, className) {
    const td = document.createElement('td');
    td.textContent = value;
    if (className) td.className = className;
    return td;
  }

  function row(e) {
    const j = e.json;
    const tr = document.createElement('tr');
    tr.dataset.index = String(e.index);
    const status = text(j, 'status');
    const d = decision(j);
    tr.append(
      cell(String(e.index), 'num'),
      cell(text(j, 'time'), 'mono'),
      cell(text(j, 'principal')),
      cell(text(j, 'operation') + (j.phase ? ' (' + text(j, 'phase') + ')' : '')),
      cell(keysOf(j).join(' '), 'mono'),
      cell(status, status === 'OK' ? 'ok' : status === '' ? '' : 'bad'),
      cell(d, d === 'allow' ? 'ok' : d === '' ? '' : 'bad'),
      cell(text(j, 'request_id'), 'mono'));
    return tr;
  }

  function render() {
    const v = state.verified;
    const count = $('count');
    if (!v) return;
    const f = filters();
    if (f === null) {
      $('rows').replaceChildren();
      count.dataset.matches = '';
      count.className = 'count error';
      count.textContent = 'From and Before take a UTC time such as 2026-11-28T00:13:45Z, or a prefix of one (2026-11-28).';
      return;
    }
    const shown = v.entries.filter((e) => matches(e.json, f));
    $('rows').replaceChildren(...shown.slice(0, ROWS_MAX).map(row));
    count.dataset.matches = String(shown.length);
    count.className = 'count';
    count.textContent = shown.length + ' of ' + v.entries.length + ' entries match' +
      (shown.length > ROWS_MAX ? '; the first ' + ROWS_MAX + ' are shown' : '') + '.';
  }

  // ---- the proof ----

  function chooseEntry(index) {
    const v = state.verified;
    if (!v || !(index >= 0 && index < v.entries.length)) return;
    $('p-index').value = String(index);
    const pre = $('entry-json');
    pre.textContent = JSON.stringify(v.entries[index].json, null, 2);
    pre.hidden = false;
  }

  async function onProve() {
    const v = state.verified;
    const run = state.run;
    const out = $('proof');
    if (!v) {
      setStatus(out, 'failed', 'FAILED: verify the log first');
      return;
    }
    const typed = $('p-index').value.trim();
    const index = /^(0|[1-9][0-9]{0,15})$/.test(typed) ? Number(typed) : -1;
    if (index < 0 || index >= v.cp.size) {
      setStatus(out, 'failed', 'FAILED: the entry must be a number from 0 to ' + (v.cp.size - 1));
      return;
    }
    chooseEntry(index);
    setStatus(out, 'working', 'Computing the proof of entry ' + index + ' from the hash tiles ...');
    try {
      const proof = await proveEntry(v, index);
      if (run !== state.run) return;
      setStatus(out, 'verified', 'Included: entry ' + index + ' is in the verified checkpoint of size ' + v.cp.size +
        ' (a proof of ' + proof.length + ' hash(es) from the hash tiles, checked against the signed root).');
    } catch (e) {
      if (run !== state.run) return;
      setStatus(out, 'failed', failureText(e));
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('verify').addEventListener('click', onVerify);
    $('vkey').addEventListener('input', () => reset('Not verified: the key changed; press Verify.'));
    $('vkey').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') onVerify();
    });
    for (const id of ['f-from', 'f-until', 'f-principal', 'f-key', 'f-operation', 'f-status']) {
      $(id).addEventListener('input', render);
      $(id).addEventListener('change', render); // a choice from the list, a field cleared
    }
    $('rows').addEventListener('click', (e) => {
      const tr = e.target.closest('tr');
      if (tr) chooseEntry(Number(tr.dataset.index));
    });
    $('prove').addEventListener('click', onProve);
  });
})();
