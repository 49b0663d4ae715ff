// Wire formats: sensor protocol v1 packets (docs/protocol.md), the bridge raw batch framing
// (docs/bridge.md section 3), `.rec` recordings and Movesense GSP IMU6 notifications.
// Pure functions, no I/O. All integers little-endian.

export const SERVICE_UUID = "7a0b1000-6c9e-4d3a-9c1e-5f1d2a3b4c5d";
export const DATA_CHAR_UUID = "7a0b1001-6c9e-4d3a-9c1e-5f1d2a3b4c5d";
export const CONTROL_CHAR_UUID = "7a0b1002-6c9e-4d3a-9c1e-5f1d2a3b4c5d";
export const MOVESENSE_SERVICE_UUID = "34802252-7185-4d5d-b431-630e7050e8f0";
export const MOVESENSE_WRITE_UUID = "34800001-7185-4d5d-b431-630e7050e8f0";
export const MOVESENSE_NOTIFY_UUID = "34800002-7185-4d5d-b431-630e7050e8f0";

export const Cmd = { START_STREAM: 1, STOP_STREAM: 2, SET_CONFIG: 3, TIME_SYNC: 4, DEVICE_INFO: 5 };
export const CmdStatus = { OK: 0, BAD_COMMAND: 1, BAD_VALUE: 2, BUSY: 3 };
export const MAX_SAMPLES_PER_PACKET = 19;
const G = 9.80665;

const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF). */
export function crc16(bytes, end = bytes.length) {
  let crc = 0xffff;
  for (let i = 0; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  return crc;
}

/** Sequence number of a v1 data packet, or null if it is not one with a valid CRC. */
export function packetSeq(bytes) {
  if (bytes.length < 16 || bytes[0] !== 1 || bytes[1] !== 1) return null;
  const crc = bytes[bytes.length - 2] | (bytes[bytes.length - 1] << 8);
  if (crc16(bytes, bytes.length - 2) !== crc) return null;
  return bytes[2] | (bytes[3] << 8);
}

/** One v1 IMU data packet. `samples`: Int16Array of n*6 raw counts (acc xyz, gyr xyz). */
export function encodePacket(seq, t0us, rateHz, accRangeG, gyrRangeDps, samples) {
  const n = samples.length / 6;
  if (!(n >= 1 && n <= MAX_SAMPLES_PER_PACKET && Number.isInteger(n))) throw new Error(`bad sample count ${n}`);
  const out = new Uint8Array(16 + 12 * n);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 1);
  dv.setUint8(1, 1);
  dv.setUint16(2, seq & 0xffff, true);
  dv.setUint32(4, t0us >>> 0, true);
  dv.setUint16(8, rateHz, true);
  dv.setUint8(10, accRangeG);
  dv.setUint16(11, gyrRangeDps, true);
  dv.setUint8(13, n);
  for (let i = 0; i < n * 6; i++) dv.setInt16(14 + 2 * i, samples[i], true);
  dv.setUint16(14 + 12 * n, crc16(out, 14 + 12 * n), true);
  return out;
}

/** Raw batch (bridge protocol v1): header + (u64 rx_time_us, u16 length, bytes) per packet. */
export function encodeRawBatch(batchSeq, packets) {
  if (packets.length < 1 || packets.length > 1024) throw new Error(`batch of ${packets.length} packets`);
  let size = 8;
  for (const p of packets) size += 10 + p.bytes.length;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 1);
  dv.setUint8(1, 0);
  dv.setUint16(2, packets.length, true);
  dv.setUint32(4, batchSeq >>> 0, true);
  let off = 8;
  for (const p of packets) {
    dv.setBigUint64(off, BigInt(Math.round(p.rxUs)), true);
    dv.setUint16(off + 8, p.bytes.length, true);
    out.set(p.bytes, off + 10);
    off += 10 + p.bytes.length;
  }
  return out;
}

export function encodeSetConfig(rateHz, accRangeG, gyrRangeDps, samplesPerPacket) {
  const b = new Uint8Array(7);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, Cmd.SET_CONFIG);
  dv.setUint16(1, rateHz, true);
  dv.setUint8(3, accRangeG);
  dv.setUint16(4, gyrRangeDps, true);
  dv.setUint8(6, samplesPerPacket);
  return b;
}

export function encodeTimeSync(hostTimeUs) {
  const b = new Uint8Array(9);
  const dv = new DataView(b.buffer);
  dv.setUint8(0, Cmd.TIME_SYNC);
  dv.setBigUint64(1, BigInt(Math.round(hostTimeUs)), true);
  return b;
}

/** DEVICE_INFO response payload (after command and status bytes). */
export function parseDeviceInfo(p) {
  const td = new TextDecoder();
  let o = 0;
  const protocol = p[o++];
  const fw = `${p[o]}.${p[o + 1]}.${p[o + 2]}`;
  o += 3;
  const ml = p[o++];
  const model = td.decode(p.subarray(o, o + ml));
  o += ml;
  const sl = p[o++];
  const serial = td.decode(p.subarray(o, o + sl));
  o += sl;
  const nr = p[o++] ?? 0;
  const rates = [];
  for (let i = 0; i < nr && o + 1 < p.length; i++, o += 2) rates.push(p[o] | (p[o + 1] << 8));
  return { protocol, firmware: fw, model, serial, rates };
}

/** Packets of a `.rec` recording: [{rxS, bytes}] (stops at a truncated record). */
export function parseRecording(buf) {
  const b = new Uint8Array(buf);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const magic = [0x49, 0x4d, 0x55, 0x52, 0x45, 0x43, 0x00, 0x01];
  if (b.length < 20 || magic.some((m, i) => b[i] !== m)) throw new Error("not an IMUREC recording");
  const metaLen = dv.getUint32(12, true);
  let meta = {};
  try {
    meta = JSON.parse(new TextDecoder().decode(b.subarray(16, 16 + metaLen)));
  } catch {
    /* metadata is optional for replay */
  }
  let off = 16 + metaLen + 4;
  const packets = [];
  while (off + 13 <= b.length) {
    const kind = b[off];
    const rxS = dv.getFloat64(off + 1, true);
    const len = dv.getUint32(off + 9, true);
    if (off + 13 + len + 4 > b.length) break;
    if (kind === 1) packets.push({ rxS, bytes: b.slice(off + 13, off + 13 + len) });
    off += 13 + len + 4;
  }
  return { meta, packets };
}

// --- Movesense GSP ---------------------------------------------------------------------------
export const GSP = { HELLO: 0, SUBSCRIBE: 1, UNSUBSCRIBE: 2, RESULT: 1, DATA: 2, DATA_PART2: 3 };

export function gspSubscribe(ref, path) {
  const p = new TextEncoder().encode(path);
  const b = new Uint8Array(2 + p.length);
  b[0] = GSP.SUBSCRIBE;
  b[1] = ref;
  b.set(p, 2);
  return b;
}

/** Joins DATA + DATA_PART2 of /Meas/IMU6 (N samples per batch must be known). */
export class GspImu6Parser {
  constructor(n) {
    this.n = n;
    this.size = 4 + 24 * n;
    this.partial = new Map();
    this.bad = 0;
  }
  /** -> {result} | {timestampMs, acc: Float32Array(3n), gyr: Float32Array(3n)} | null */
  feed(bytes) {
    if (bytes.length < 2) {
      this.bad++;
      return null;
    }
    const [kind, ref] = bytes;
    const body = bytes.subarray(2);
    if (kind === GSP.RESULT) return { result: body.length === 2 ? body[0] | (body[1] << 8) : 200, ref };
    if (kind === GSP.DATA) {
      if (body.length === this.size) return this.batch(body);
      if (body.length < this.size) this.partial.set(ref, body.slice());
      else this.bad++;
      return null;
    }
    if (kind === GSP.DATA_PART2) {
      const first = this.partial.get(ref);
      this.partial.delete(ref);
      if (!first || first.length + body.length !== this.size) {
        this.bad++;
        return null;
      }
      const all = new Uint8Array(this.size);
      all.set(first);
      all.set(body, first.length);
      return this.batch(all);
    }
    this.bad++;
    return null;
  }
  batch(body) {
    const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const f = (i) => dv.getFloat32(4 + 4 * i, true);
    const acc = new Float32Array(3 * this.n);
    const gyr = new Float32Array(3 * this.n);
    for (let i = 0; i < 3 * this.n; i++) {
      acc[i] = f(i);
      gyr[i] = f(3 * this.n + i);
    }
    return { timestampMs: dv.getUint32(0, true), acc, gyr };
  }
}

/** Re-encodes Movesense IMU6 batches as v1 packets (±16 g, ±2000 dps), page-made seq numbers. */
export class MovesenseToV1 {
  constructor(rateHz) {
    this.rate = rateHz;
    this.seq = 0;
    this.lastRaw = null;
    this.ms = 0;
  }
  convert(batch) {
    if (this.lastRaw === null) this.ms = batch.timestampMs;
    else {
      let step = (batch.timestampMs - this.lastRaw) >>> 0;
      if (step >= 2 ** 31) step -= 2 ** 32;
      this.ms += step;
    }
    this.lastRaw = batch.timestampMs;
    const n = batch.acc.length / 3;
    const out = [];
    for (let start = 0; start < n; start += MAX_SAMPLES_PER_PACKET) {
      const m = Math.min(MAX_SAMPLES_PER_PACKET, n - start);
      const s = new Int16Array(6 * m);
      for (let i = 0; i < m; i++) {
        for (let k = 0; k < 3; k++) {
          s[6 * i + k] = q((batch.acc[3 * (start + i) + k] / G) * (32768 / 16));
          s[6 * i + 3 + k] = q(batch.gyr[3 * (start + i) + k] * (32768 / 2000));
        }
      }
      const t0us = Math.round((this.ms + (start * 1000) / this.rate) * 1000) % 2 ** 32;
      out.push(encodePacket(this.seq++, t0us, this.rate, 16, 2000, s));
    }
    return out;
  }
}

function q(v) {
  return Math.max(-32768, Math.min(32767, Math.round(v)));
}
