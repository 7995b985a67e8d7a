// Moose AudioWorklet processors: capture (microphone -> 512-sample int16 chunks) and
// playback (per-sender jitter buffers, mixed). Both run on the audio render thread at the
// context's rate, which moose.js sets to 200 kHz, the Moose wire rate.
'use strict';

const CHUNK_SAMPLES = 512; // one Moose PCM message: 512 int16 = 1024 bytes = 2.56 ms

// Converts the first input channel to int16 little-endian and posts each full chunk's
// ArrayBuffer to the main thread (transferred, not copied).
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new DataView(new ArrayBuffer(CHUNK_SAMPLES * 2));
    this.fill = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    // No channel means the source is not connected (yet): send silence so the stream stays
    // continuous and the receiver's jitter buffer does not underrun.
    const frames = channel ? channel.length : 128;
    for (let i = 0; i < frames; i++) {
      const x = channel ? channel[i] : 0;
      const s = x >= 1 ? 32767 : x <= -1 ? -32768 : Math.round(x * 32767);
      this.chunk.setInt16(this.fill * 2, s, true);
      if (++this.fill === CHUNK_SAMPLES) {
        const buf = this.chunk.buffer;
        this.port.postMessage(buf, [buf]);
        this.chunk = new DataView(new ArrayBuffer(CHUNK_SAMPLES * 2));
        this.fill = 0;
      }
    }
    return true;
  }
}

// One sender's jitter buffer: a queue of Float32Array chunks. It plays only after `target`
// samples have gathered, so network jitter up to that depth is absorbed; when it runs dry it
// counts an underrun and gathers again. It never holds more than `max` samples: on overflow
// (the sender's clock runs fast, or a burst after a stall) the oldest audio goes, which keeps
// the delay bounded.
class JitterBuffer {
  constructor(target, max) {
    this.target = target;
    this.max = max;
    this.chunks = [];
    this.offset = 0; // samples already played from chunks[0]
    this.buffered = 0;
    this.playing = false;
    this.idle = 0; // render quanta since the last chunk arrived
  }

  push(samples) {
    this.chunks.push(samples);
    this.buffered += samples.length;
    this.idle = 0;
    let dropped = 0;
    while (this.buffered > this.max) {
      const oldest = this.chunks.shift();
      this.buffered -= oldest.length - this.offset;
      this.offset = 0;
      dropped++;
    }
    return dropped;
  }

  // Adds up to out.length samples into `out`; returns true on an underrun.
  mixInto(out) {
    this.idle++;
    if (!this.playing) {
      if (this.buffered < this.target) return false;
      this.playing = true;
    }
    let i = 0;
    while (i < out.length && this.chunks.length > 0) {
      const head = this.chunks[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      for (let k = 0; k < n; k++) out[i + k] += head[this.offset + k];
      i += n;
      this.offset += n;
      this.buffered -= n;
      if (this.offset === head.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    if (i < out.length) {
      this.playing = false; // the rest of this quantum is silence; gather `target` again
      return true;
    }
    return false;
  }
}

// Receives {peer, pcm} messages (pcm: ArrayBuffer of int16 LE) from the main thread and plays
// the sum of all senders. Reports underruns and overflow drops every ~100 ms.
class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const target = Math.round(sampleRate * (opts.targetMs || 30) / 1000);
    const max = Math.round(sampleRate * (opts.maxMs || 90) / 1000);
    this.streams = new Map();
    this.underruns = 0;
    this.overflowDrops = 0;
    this.quanta = 0;
    this.port.onmessage = (e) => {
      const { peer, pcm } = e.data;
      let s = this.streams.get(peer);
      if (!s) {
        s = new JitterBuffer(target, max);
        this.streams.set(peer, s);
      }
      const view = new DataView(pcm);
      const samples = new Float32Array(pcm.byteLength >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 32768;
      this.overflowDrops += s.push(samples);
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    for (const [peer, s] of this.streams) {
      if (s.mixInto(out)) this.underruns++;
      // A sender silent for ~1 s has left (or muted): forget its buffer.
      if (s.idle * out.length > sampleRate) this.streams.delete(peer);
    }
    for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i]));
    if (++this.quanta * out.length >= sampleRate / 10) {
      this.quanta = 0;
      this.port.postMessage({ underruns: this.underruns, overflowDrops: this.overflowDrops });
    }
    return true;
  }
}

registerProcessor('moose-capture', CaptureProcessor);
registerProcessor('moose-playback', PlaybackProcessor);
