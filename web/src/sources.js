// Packet sources: a Web Bluetooth sensor (our GATT service or Movesense GSP) or a `.rec` replay.
// Every source calls `onPacket(bytes, rxUs)` with v1 wire packets exactly as they are forwarded
// and `onState(text, ble)` on link changes (ble: "connected" | "disconnected" | "reconnecting").
import {
  CONTROL_CHAR_UUID, Cmd, CmdStatus, DATA_CHAR_UUID, GspImu6Parser, MOVESENSE_NOTIFY_UUID,
  MOVESENSE_SERVICE_UUID, MOVESENSE_WRITE_UUID, MovesenseToV1, SERVICE_UUID, encodeSetConfig,
  encodeTimeSync, gspSubscribe, parseDeviceInfo, parseRecording,
} from "./wire.js";

const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function bluetoothProblem() {
  if (!window.isSecureContext) return "Web Bluetooth needs HTTPS (or localhost).";
  if (!navigator.bluetooth) return "This browser has no Web Bluetooth (use Chrome on Android or a desktop).";
  return null;
}

class BaseSource {
  constructor() {
    this.onPacket = () => {};
    this.onState = () => {};
    this.onBattery = () => {};
    this.reconnects = 0;
    this.battery = null;
    this.rate = 200;
    this.device = {};
  }
}

/** A sensor over Web Bluetooth; `connect()` must run inside a click handler (user gesture). */
export class BleSource extends BaseSource {
  constructor({ rateHz = 200, accRangeG = 8, gyrRangeDps = 2000 } = {}) {
    super();
    this.cfg = { rateHz, accRangeG, gyrRangeDps };
    this.streaming = false;
    this.wanted = false;
    this.pending = null;
  }

  async connect() {
    this.dev = await navigator.bluetooth.requestDevice({
      filters: [{ services: [SERVICE_UUID] }, { services: [MOVESENSE_SERVICE_UUID] }, { namePrefix: "Movesense" }],
      optionalServices: [SERVICE_UUID, MOVESENSE_SERVICE_UUID, "battery_service", "device_information"],
    });
    this.dev.addEventListener("gattserverdisconnected", () => this.lost());
    await this.setup();
    this.device = { ...this.device, name: this.dev.name || "sensor" };
  }

  async setup() {
    this.onState("connecting…", "reconnecting");
    const gatt = await this.dev.gatt.connect();
    let svc = null;
    try {
      svc = await gatt.getPrimaryService(SERVICE_UUID);
      this.kind = "v1";
    } catch {
      svc = await gatt.getPrimaryService(MOVESENSE_SERVICE_UUID);
      this.kind = "movesense";
    }
    if (this.kind === "v1") await this.setupV1(svc);
    else await this.setupMovesense(svc);
    await this.setupBattery(gatt);
    this.onState(`connected (${this.kind === "v1" ? "IMU protocol v1" : "Movesense"})`, "connected");
  }

  async setupV1(svc) {
    this.data = await svc.getCharacteristic(DATA_CHAR_UUID);
    this.control = await svc.getCharacteristic(CONTROL_CHAR_UUID);
    this.control.addEventListener("characteristicvaluechanged", (e) => {
      const v = new Uint8Array(e.target.value.buffer.slice(0));
      if (this.pending && v[0] === this.pending.cmd) this.pending.resolve(v);
    });
    this.data.addEventListener("characteristicvaluechanged", (e) => {
      const v = e.target.value;
      this.onPacket(new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)), nowUs());
    });
    await this.control.startNotifications();
    await this.data.startNotifications();
    try {
      const info = await this.command(new Uint8Array([Cmd.DEVICE_INFO]));
      const di = parseDeviceInfo(info.subarray(2));
      this.device = { firmware: di.firmware, hardware: di.model, serial: di.serial };
      if (di.rates.length && !di.rates.includes(this.cfg.rateHz)) this.cfg.rateHz = di.rates[0];
    } catch (e) {
      console.warn("DEVICE_INFO", e);
    }
    // The MTU is not visible to Web Bluetooth: start at 19 samples and step down on BAD_VALUE.
    for (let n = 19; n >= 1; n--) {
      const r = await this.command(encodeSetConfig(this.cfg.rateHz, this.cfg.accRangeG, this.cfg.gyrRangeDps, n));
      if (r[1] === CmdStatus.OK) break;
      if (r[1] !== CmdStatus.BAD_VALUE || n === 1) throw new Error(`SET_CONFIG refused (status ${r[1]})`);
    }
    this.rate = this.cfg.rateHz;
    await this.command(encodeTimeSync(nowUs())).catch(() => {});
    if (this.wanted) await this.command(new Uint8Array([Cmd.START_STREAM]));
  }

  async setupMovesense(svc) {
    this.rate = 104;
    const parser = new GspImu6Parser(8);
    const conv = new MovesenseToV1(this.rate);
    this.msWrite = await svc.getCharacteristic(MOVESENSE_WRITE_UUID);
    this.msNotify = await svc.getCharacteristic(MOVESENSE_NOTIFY_UUID);
    this.msNotify.addEventListener("characteristicvaluechanged", (e) => {
      const v = e.target.value;
      const out = parser.feed(new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength)));
      if (out && out.acc && this.wanted) {
        const rx = nowUs();
        for (const p of conv.convert(out)) this.onPacket(p, rx);
      }
    });
    await this.msNotify.startNotifications();
    this.device = { firmware: "movesense-gsp", hardware: "Movesense" };
    if (this.wanted) await this.msWrite.writeValueWithResponse(gspSubscribe(99, `/Meas/IMU6/${this.rate}`));
  }

  async setupBattery(gatt) {
    try {
      const b = await (await gatt.getPrimaryService("battery_service")).getCharacteristic("battery_level");
      const read = (v) => {
        this.battery = v.getUint8(0);
        this.onBattery(this.battery);
      };
      read(await b.readValue());
      b.addEventListener("characteristicvaluechanged", (e) => read(e.target.value));
      await b.startNotifications().catch(() => {});
    } catch {
      /* no battery service */
    }
  }

  command(bytes, timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending = null;
        reject(new Error(`command 0x${bytes[0].toString(16)}: no response in 2 s`));
      }, timeoutMs);
      this.pending = {
        cmd: bytes[0],
        resolve: (v) => {
          clearTimeout(t);
          this.pending = null;
          resolve(v);
        },
      };
      this.control.writeValueWithResponse(bytes).catch((e) => {
        clearTimeout(t);
        this.pending = null;
        reject(e);
      });
    });
  }

  async start() {
    this.wanted = true;
    if (this.kind === "v1") await this.command(new Uint8Array([Cmd.START_STREAM]));
    else await this.msWrite.writeValueWithResponse(gspSubscribe(99, `/Meas/IMU6/${this.rate}`));
  }

  async stop() {
    this.wanted = false;
    try {
      if (this.kind === "v1") await this.command(new Uint8Array([Cmd.STOP_STREAM]));
      else await this.msWrite.writeValueWithResponse(new Uint8Array([2, 99]));
    } catch (e) {
      console.warn("stop", e);
    }
  }

  disconnect() {
    this.wanted = false;
    this.closing = true;
    this.dev?.gatt?.disconnect();
  }

  /** Unsolicited disconnect: reconnect with capped, jittered backoff and set up again. */
  async lost() {
    if (this.closing || this.reconnecting) return;
    this.reconnecting = true;
    this.onState("sensor disconnected: reconnecting…", "reconnecting");
    for (let attempt = 0; !this.closing; attempt++) {
      await sleep(Math.random() * Math.min(8000, 250 * 2 ** attempt));
      try {
        await this.setup();
        this.reconnects++;
        break;
      } catch (e) {
        console.warn("reconnect", e);
      }
    }
    this.reconnecting = false;
  }
}

/** Replays the wire packets of a `.rec` recording at `speed` x real time (demo / tests). */
export class ReplaySource extends BaseSource {
  constructor(buffer, speed = 1) {
    super();
    const { meta, packets } = parseRecording(buffer);
    if (!packets.length) throw new Error("the recording holds no packets");
    this.packets = packets;
    this.speed = speed;
    this.rate = meta.sample_rate_hz || meta.config?.sample_rate_hz || 200;
    this.device = { name: "replay", firmware: "recording" };
    this.battery = 100;
    this.kind = "replay";
  }
  async connect() {
    this.onState(`recording loaded: ${this.packets.length} packets`, "connected");
    this.onBattery(this.battery);
  }
  async start() {
    this.onState(`replaying the recording at ${this.speed}×`, "connected");
    this.i = 0;
    this.t0 = performance.now();
    this.rx0 = this.packets[0].rxS;
    this.done = new Promise((r) => (this.finish = r));
    this.timer = setInterval(() => this.tick(), 50);
  }
  tick() {
    const due = this.rx0 + ((performance.now() - this.t0) / 1000) * this.speed;
    while (this.i < this.packets.length && this.packets[this.i].rxS <= due) {
      this.onPacket(this.packets[this.i].bytes, nowUs());
      this.i++;
    }
    if (this.i >= this.packets.length) {
      clearInterval(this.timer);
      this.onState("recording finished", "connected");
      this.finish();
    }
  }
  async stop() {
    clearInterval(this.timer);
    this.finish?.();
  }
  disconnect() {
    clearInterval(this.timer);
  }
}
