// Moose web client: 200 kHz 16-bit PCM over the relay's WebSocket, end-to-end encrypted with
// AES-256-GCM under the leaf key in the URL fragment (never sent to the server).
// Wire format and the reasons for it: docs/web-client.md.
'use strict';

const SAMPLE_RATE = 200000; // Moose wire rate; one message = 512 samples = 2.56 ms
const PREFIX_BYTES = 4; // random per-sender IV prefix, fresh per page load
const IV_BYTES = 12; // prefix(4) || counter(8, big-endian)
const TAG_BYTES = 16; // AES-GCM tag, appended to the ciphertext by WebCrypto
const RING_SAMPLES = SAMPLE_RATE; // last second of the first peer's stream, for diagnostics
const MAX_UNSENT_BYTES = 64 * 1024; // ~60 ms of audio queued in the socket: drop, don't lag
const PEER_TIMEOUT_MS = 3000; // a sender unheard for this long has left the line

const $ = (id) => document.getElementById(id);

const stats = {
  state: 'starting', status: '', sent: 0, received: 0, decryptFailures: 0, replays: 0,
  underruns: 0, overflowDrops: 0, sendDrops: 0, bytesSent: 0, bytesReceived: 0,
};
let inviteLink = '';
let leafKey = null; // CryptoKey
let socket = null; // the open WebSocket, or null
let playback = null; // AudioWorkletNode 'moose-playback'
let muted = false;
let levels = { input: 0, output: 0 }; // peaks since the last UI tick

// Authenticated senders by IV prefix (hex): {last: highest accepted counter, seen: ms}. Kept
// for the page's lifetime: forgetting a sender's counter would let its old messages replay.
const senders = new Map();
let ringPeer = null; // the sender whose stream recentPlayback() keeps
let sealer = null; // our Sealer, once the key is imported
const ring = new Float32Array(RING_SAMPLES);
let ringPos = 0;
let ringFill = 0;

// Read-only diagnostics for tests and curious users.
window.moose = Object.freeze({
  get state() { return stats.state; },
  get status() { return stats.status; },
  get sent() { return stats.sent; },
  get received() { return stats.received; },
  get decryptFailures() { return stats.decryptFailures; },
  get replays() { return stats.replays; },
  get underruns() { return stats.underruns; },
  get overflowDrops() { return stats.overflowDrops; },
  get sendDrops() { return stats.sendDrops; },
  get bytesSent() { return stats.bytesSent; },
  get bytesReceived() { return stats.bytesReceived; },
  get self() { return sealer ? sealer.id : ''; },
  get peers() { return activePeers(); },
  get inviteLink() { return inviteLink; },
  // The last n decoded samples (floats in [-1, 1), 200 kHz) of the first peer's stream.
  recentPlayback(n) {
    n = Math.max(0, Math.min(n | 0, ringFill));
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = ring[(ringPos - n + i + RING_SAMPLES) % RING_SAMPLES];
    return out;
  },
});

function show(text) {
  stats.status = text;
  $('status').textContent = text;
}

function setState(state) {
  stats.state = state;
  $('state').textContent = state;
}

function fail(text) {
  setState('error');
  show(text);
  $('status').classList.add('error');
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

function toBase64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_')
    .replace(/=+$/, '');
}

// 32 bytes are exactly 43 base64url characters without padding.
function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return null;
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '=');
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// Reads the apikey and the leaf key from the address; makes a fresh leaf for #generate_leaf.
function readAddress() {
  const apikey = new URLSearchParams(location.search).get('apikey');
  if (!apikey) {
    throw new Error('No apikey in the address. Open /?apikey=KEY#generate_leaf to start a '
      + 'call; the relay operator has the key.');
  }
  if (!/^[A-Za-z0-9_-]{16,}$/.test(apikey)) {
    throw new Error('The apikey in the address is malformed: it needs at least 16 characters '
      + 'of A-Z a-z 0-9 - _.');
  }
  if (location.hash === '#generate_leaf') {
    const fresh = '#leaf_' + toBase64url(crypto.getRandomValues(new Uint8Array(32)));
    history.replaceState(null, '', location.pathname + location.search + fresh);
  }
  const key = location.hash.startsWith('#leaf_') ? fromBase64url(location.hash.slice(6)) : null;
  if (!key) {
    throw new Error('The address needs #generate_leaf (to start a call) or #leaf_ followed by '
      + 'the 43-character key from an invite link.');
  }
  return { apikey, key, invite: location.origin + location.pathname + location.search
    + location.hash };
}

// Sender side of the wire format: IV = prefix(4) || counter(8 BE), counter from 1, never reused.
class Sealer {
  constructor(key) {
    this.key = key;
    this.counter = 0n;
    this.rotate();
  }

  rotate() {
    this.prefix = crypto.getRandomValues(new Uint8Array(PREFIX_BYTES));
    this.id = hex(this.prefix);
  }

  // Starts the encryption now (WebCrypto works off the main thread) and resolves to
  // IV || ciphertext || tag.
  seal(pcm) {
    const iv = new Uint8Array(IV_BYTES);
    iv.set(this.prefix);
    this.counter += 1n;
    new DataView(iv.buffer).setBigUint64(PREFIX_BYTES, this.counter, false);
    return crypto.subtle.encrypt({ name: 'AES-GCM', iv }, this.key, pcm).then((ct) => {
      const msg = new Uint8Array(IV_BYTES + ct.byteLength);
      msg.set(iv);
      msg.set(new Uint8Array(ct), IV_BYTES);
      return msg.buffer;
    });
  }
}

// Encryptions start in parallel but are sent in capture order, so counters arrive increasing.
let sendChain = Promise.resolve();

function onCapture(pcm) {
  levels.input = Math.max(levels.input, peak(pcm));
  const ws = socket;
  if (muted || !ws || !sealer) return;
  if (ws.bufferedAmount > MAX_UNSENT_BYTES) {
    stats.sendDrops++;
    return;
  }
  const sealed = sealer.seal(pcm);
  sendChain = sendChain.then(() => sealed).then((msg) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(msg);
    stats.sent++;
    stats.bytesSent += msg.byteLength;
  }).catch((e) => console.error('moose: send', e));
}

// Receiver side. Decryptions start in parallel; results are handled in arrival order, which
// the relay keeps per sender, so "counter greater than the last accepted" is the replay rule.
let recvChain = Promise.resolve();

function onMessage(msg) {
  stats.bytesReceived += msg.byteLength;
  const len = msg.byteLength - IV_BYTES - TAG_BYTES;
  if (len <= 0 || len % 2 !== 0) {
    stats.decryptFailures++;
    return;
  }
  const iv = new Uint8Array(msg, 0, IV_BYTES);
  const id = hex(iv.subarray(0, PREFIX_BYTES));
  const counter = new DataView(msg).getBigUint64(PREFIX_BYTES, false);
  // The relay never echoes our own messages, so an authentic one under our prefix is a replay
  // of ours or another sender that drew the same prefix (IVs may overlap): see ownPrefix().
  const own = sealer !== null && id === sealer.id;
  const known = senders.get(id);
  if (!own && known && counter <= known.last) {
    stats.replays++;
    return;
  }
  const opened = crypto.subtle.decrypt({ name: 'AES-GCM', iv }, leafKey,
    new Uint8Array(msg, IV_BYTES));
  recvChain = recvChain.then(() => opened.then(
    (pcm) => (own ? ownPrefix() : accept(id, counter, pcm)),
    () => { stats.decryptFailures++; },
  )).catch((e) => console.error('moose: receive', e));
}

// Drops an authentic message under our own prefix and moves to a fresh prefix, so that our
// IVs cannot keep overlapping those of a sender who drew the same random prefix. Only
// authentic messages count: a forgery must not make us rotate.
function ownPrefix() {
  stats.replays++;
  // Retire the old prefix like a sender's: our messages under it can no longer replay to us.
  senders.set(sealer.id, { last: sealer.counter, seen: -Infinity });
  sealer.rotate();
}

function accept(id, counter, pcm) {
  let peer = senders.get(id);
  if (peer && counter <= peer.last) {
    stats.replays++; // checked again: an earlier copy may have been accepted meanwhile
    return;
  }
  if (!peer) {
    peer = { last: 0n, seen: 0 };
    senders.set(id, peer); // only authenticated senders become peers
  }
  peer.last = counter; // moved only after the tag verified, so forgeries cannot block a sender
  peer.seen = performance.now();
  stats.received++;
  levels.output = Math.max(levels.output, peak(pcm));
  if (!ringPeer || peer.seen - senders.get(ringPeer).seen > PEER_TIMEOUT_MS) ringPeer = id;
  if (ringPeer === id) record(pcm);
  if (playback) playback.port.postMessage({ peer: id, pcm }, [pcm]);
}

function activePeers() {
  const now = performance.now();
  return [...senders].filter(([, p]) => now - p.seen < PEER_TIMEOUT_MS).map(([id]) => id);
}

function record(pcm) {
  const view = new DataView(pcm);
  for (let i = 0; i < pcm.byteLength; i += 2) {
    ring[ringPos] = view.getInt16(i, true) / 32768;
    ringPos = (ringPos + 1) % RING_SAMPLES;
  }
  ringFill = Math.min(RING_SAMPLES, ringFill + pcm.byteLength / 2);
}

function peak(pcm) {
  const view = new DataView(pcm);
  let max = 0;
  for (let i = 0; i < pcm.byteLength; i += 2) max = Math.max(max, Math.abs(view.getInt16(i, true)));
  return max / 32768;
}

// Connects to the line and reconnects with exponential backoff (1 s .. 30 s, jittered).
function connect(apikey) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let backoff = 1000;
  const attempt = () => {
    setState('connecting');
    const ws = new WebSocket(`${scheme}://${location.host}/ws?apikey=${encodeURIComponent(apikey)}`);
    ws.binaryType = 'arraybuffer';
    let opened = false;
    ws.onopen = () => {
      opened = true;
      backoff = 1000;
      socket = ws;
      setState('open');
    };
    ws.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) onMessage(e.data);
    };
    ws.onclose = (e) => {
      socket = null;
      // A refusal before the upgrade (401/403/429/503) looks like any failed connect here.
      setState(opened ? `closed (${e.code}${e.reason ? ': ' + e.reason : ''})`
        : 'refused or unreachable');
      const delay = backoff * (0.75 + Math.random() / 2);
      backoff = Math.min(backoff * 2, 30000);
      $('state').textContent += (opened ? '' : ' (wrong apikey, line full, or relay down)')
        + `, retrying in ${Math.round(delay / 1000)} s`;
      setTimeout(attempt, delay);
    };
  };
  attempt();
}

async function startAudio() {
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: 'interactive' });
  } catch (e) {
    throw new Error(`This browser cannot run audio at 200 kHz, the Moose wire rate (${e.name}). `
      + 'Chromium-based browsers can.');
  }
  await ctx.audioWorklet.addModule('/worklet.js');
  playback = new AudioWorkletNode(ctx, 'moose-playback', {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { targetMs: 30, maxMs: 90 },
  });
  playback.port.onmessage = (e) => {
    stats.underruns = e.data.underruns;
    stats.overflowDrops = e.data.overflowDrops;
  };
  playback.connect(ctx.destination);
  try {
    const media = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1,
    } });
    // No outputs: the node only feeds the socket, and Chromium still pulls it.
    const capture = new AudioWorkletNode(ctx, 'moose-capture', {
      numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: 'explicit',
    });
    capture.port.onmessage = (e) => onCapture(e.data);
    ctx.createMediaStreamSource(media).connect(capture);
  } catch (e) {
    show(`No microphone (${e.name}): listening only.`);
  }
  // Browsers keep audio suspended until the user interacts with the page.
  const start = $('start');
  const update = () => { start.hidden = ctx.state === 'running'; };
  start.onclick = () => ctx.resume();
  ctx.onstatechange = update;
  update();
}

function tick(last) {
  const now = performance.now();
  const secs = (now - last.time) / 1000;
  const kbps = (bytes) => (bytes * 8 / 1000 / secs).toFixed(0);
  $('tx').textContent = kbps(stats.bytesSent - last.sent);
  $('rx').textContent = kbps(stats.bytesReceived - last.received);
  $('in-level').value = levels.input;
  $('out-level').value = levels.output;
  levels = { input: 0, output: 0 };
  const active = activePeers();
  $('peers').textContent = active.length ? active.map((id) => `peer ${id}`).join(', ')
    : 'nobody else yet';
  $('self').textContent = sealer ? `peer ${sealer.id}` : '';
  $('counters').textContent = `${stats.decryptFailures} decrypt failures, ${stats.replays} `
    + `replays, ${stats.underruns} underruns, ${stats.sendDrops} send drops`;
  const next = { time: now, sent: stats.bytesSent, received: stats.bytesReceived };
  setTimeout(() => tick(next), 500);
}

async function main() {
  if (!window.isSecureContext || !crypto.subtle) {
    fail('This page is not a secure context, so the browser withholds WebCrypto and the '
      + 'microphone. Open it over https (or on localhost).');
    return;
  }
  let address;
  try {
    address = readAddress();
  } catch (e) {
    fail(e.message);
    return;
  }
  inviteLink = address.invite;
  $('invite-link').value = inviteLink;
  $('copy').onclick = () => navigator.clipboard.writeText(inviteLink).then(() => {
    $('copy').textContent = 'Copied';
    setTimeout(() => { $('copy').textContent = 'Copy invite link'; }, 2000);
  }, () => $('invite-link').select());
  // Editing the fragment does not reload the page; reload so the new key takes effect.
  window.onhashchange = () => location.reload();
  $('mute').onclick = () => {
    muted = !muted;
    $('mute').textContent = muted ? 'Unmute' : 'Mute';
  };
  $('invite').hidden = false;
  $('call').hidden = false;
  leafKey = await crypto.subtle.importKey('raw', address.key, 'AES-GCM', false,
    ['encrypt', 'decrypt']);
  sealer = new Sealer(leafKey);
  show('Ready. Send the invite link to whoever should join.');
  tick({ time: performance.now(), sent: 0, received: 0 });
  connect(address.apikey);
  try {
    await startAudio();
  } catch (e) {
    show(`Audio unavailable: ${e.message}`);
  }
}

main().catch((e) => fail(`Unexpected error: ${e.message}`));
