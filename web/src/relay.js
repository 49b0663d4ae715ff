// The page side of the WebSocket relay (docs/web.md): an ordered outbox of raw batches and
// status messages that survives network drops, and the messages the server sends back.
//
// Every item stays in the outbox until the relay acknowledges it (after the broker's PUBACK).
// After a reconnect all unacknowledged items are sent again in order with their batch_seq /
// status id; the relay acknowledges re-sent items without publishing them twice.

const MAX_ITEMS = 2400; // 10 minutes of 0.25 s batches; beyond: drop the oldest raw batch

export class Relay {
  /** mode: {session} to stream, or {watch: runner, session?} to watch read-only. */
  constructor(mode, { onMessage = () => {}, onState = () => {} } = {}) {
    this.mode = mode;
    this.onMessage = onMessage;
    this.onState = onState;
    this.items = []; // {kind: "raw", seq, data} | {kind: "status", id, data}
    this.statusId = 0;
    this.reconnects = 0;
    this.dropped = 0;
    this.acked = 0;
    this.ready = false;
    this.closed = false;
    this.connects = 0;
    this.attempt = 0;
    this.lastIndex = -1; // index of the last server message seen (streaming: resumed after it)
    this.connect();
  }

  url() {
    const p = new URLSearchParams();
    if (this.mode.watch) p.set("watch", this.mode.watch);
    if (this.mode.session) p.set("session", this.mode.session);
    if (!this.mode.watch) p.set("after", String(this.lastIndex));
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?${p}`;
  }

  connect() {
    if (this.closed) return;
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.onState("connecting");
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ready = false;
      if (this.closed) return;
      this.onState("offline", e.reason);
      this.attempt++;
      const delay = Math.random() * Math.min(5000, 250 * 2 ** this.attempt);
      setTimeout(() => {
        this.reconnects++;
        this.connect();
      }, delay);
    };
    ws.onerror = () => {};
  }

  receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (m.type === "ready") {
      this.ready = true;
      this.attempt = 0;
      this.connects++;
      this.onState("online");
      for (const it of this.items) this.ws.send(it.data); // resend everything not acknowledged
    } else if (m.type === "ack") {
      const idx = this.items.findIndex((it) =>
        m.batch !== undefined ? it.kind === "raw" && it.seq === m.batch : it.kind === "status" && it.id === m.status,
      );
      if (idx >= 0) {
        this.items.splice(idx, 1);
        this.acked++;
      }
      this.onState(this.ready ? "online" : "offline");
    } else {
      if (m.index !== undefined) {
        if (m.index <= this.lastIndex) return; // already seen
        this.lastIndex = m.index;
      }
      this.onMessage(m);
    }
  }

  push(item) {
    this.items.push(item);
    while (this.items.length > MAX_ITEMS) {
      const i = this.items.findIndex((it) => it.kind === "raw");
      if (i < 0) break;
      this.items.splice(i, 1);
      this.dropped++;
    }
    if (this.ready && this.ws.readyState === WebSocket.OPEN) this.ws.send(item.data);
  }

  sendRaw(seq, bytes) {
    this.push({ kind: "raw", seq, data: bytes });
  }

  sendStatus(status) {
    const id = this.statusId++;
    this.push({ kind: "status", id, data: JSON.stringify({ op: "status", id, status }) });
  }

  get buffered() {
    return this.items.length;
  }

  /** Wait until the outbox is empty (or the timeout). */
  async drain(timeoutMs = 30000) {
    const end = Date.now() + timeoutMs;
    while (this.items.length && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    return this.items.length === 0;
  }

  close() {
    this.closed = true;
    this.ready = false;
    this.ws?.close(1000, "bye");
  }

  /** Drop the connection now (the "network drop" of the tests); it reconnects by itself. */
  simulateDrop() {
    this.ws?.close(4000, "simulated drop");
  }
}
