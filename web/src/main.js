// The runner's page and the clinic view. See docs/web.md.
import "./style.css";
import "uplot/dist/uPlot.min.css";
import uPlot from "uplot";
import { Cues } from "./cues.js";
import { Relay } from "./relay.js";
import { BleSource, ReplaySource, bluetoothProblem } from "./sources.js";
import * as wire from "./wire.js";
import { encodeRawBatch, packetSeq } from "./wire.js";

const $ = (id) => document.getElementById(id);
const BATCH_MS = 250;
const cues = new Cues();

const state = {
  user: null,
  source: null,
  relay: null,
  mode: null, // "stream" | "watch"
  session: null,
  batchSeq: 0,
  pending: [],
  packets: 0,
  lost: 0,
  lastSeq: null,
  missing: new Set(),
  steps: [],
  stepTimes: new Set(),
  alerts: new Map(), // code|side -> active alert
  alertLog: [],
  battery: null,
  bleState: "disconnected",
  sessionsSeen: new Set(),
  timers: [],
};
window.__imu = state; // for tests and debugging
window.__imuCues = cues;
window.__imuWire = wire; // the encoders, checked against the Python reference by tests/web

// --- login -------------------------------------------------------------------------------------
async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts });
  if (!r.ok) throw new Error((await r.text()) || r.statusText);
  return r.json();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  $("login-btn").disabled = true;
  try {
    const me = await api("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("username").value.trim(), password: $("password").value }),
    });
    $("password").value = "";
    loggedIn(me.user);
  } catch (err) {
    $("login-error").textContent = String(err.message || err);
  } finally {
    $("login-btn").disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  location.reload();
});

function loggedIn(user) {
  state.user = user;
  $("who").textContent = user;
  $("login").hidden = true;
  $("app").hidden = false;
  $("foot").hidden = false;
  $("foot-user").textContent = user;
  $("mute").hidden = false;
  $("reports-runner").value = user;
  const problem = bluetoothProblem();
  if (problem) {
    $("bt-problem").textContent = problem;
    $("bt-problem").hidden = false;
    $("connect").disabled = true;
    $("replay").open = true;
  }
}

api("/api/me").then((me) => loggedIn(me.user)).catch(() => {});

// --- tabs & mute -------------------------------------------------------------------------------
for (const b of document.querySelectorAll("[data-tab]")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll("[data-tab]")) o.setAttribute("aria-selected", String(o === b));
    for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== `tab-${b.dataset.tab}`;
    if (b.dataset.tab === "reports") loadSessions();
  });
}
function renderMute() {
  $("mute").setAttribute("aria-pressed", String(cues.muted));
  $("mute").textContent = cues.muted ? "Muted" : "Cues on";
  $("mute").title = cues.muted ? "Alerts are shown, not spoken" : "Alerts are spoken and vibrate";
}
renderMute();
$("mute").addEventListener("click", () => {
  cues.setMuted(!cues.muted);
  if (!cues.muted) cues.prime();
  renderMute();
});

// --- sensor / replay ---------------------------------------------------------------------------
function attach(source) {
  state.source = source;
  source.onPacket = onPacket;
  source.onState = (text, ble) => {
    $("sensor-state").textContent = text;
    const was = state.bleState;
    state.bleState = ble;
    if (state.relay && state.mode === "stream" && was !== ble) sendInfo();
    renderLink();
  };
  source.onBattery = (pct) => {
    state.battery = pct;
    renderLink();
  };
}

$("connect").addEventListener("click", async () => {
  const src = new BleSource();
  attach(src);
  $("connect").disabled = true;
  try {
    await src.connect();
    $("start").disabled = false;
  } catch (err) {
    $("sensor-state").textContent = `not connected: ${err.message || err}`;
    $("connect").disabled = false;
  }
});

$("replay-file").addEventListener("change", async () => {
  const f = $("replay-file").files[0];
  if (!f) return;
  try {
    const src = new ReplaySource(await f.arrayBuffer(), Number($("replay-speed").value));
    attach(src);
    await src.connect();
    $("start").disabled = false;
  } catch (err) {
    $("sensor-state").textContent = `cannot replay: ${err.message || err}`;
  }
});
$("replay-speed").addEventListener("change", () => {
  if (state.source instanceof ReplaySource) state.source.speed = Number($("replay-speed").value);
});

function onPacket(bytes, rxUs) {
  state.packets++;
  const seq = packetSeq(bytes);
  if (seq !== null) {
    // the sensor's sequence numbers: a gap counts as lost until a late packet fills it
    if (state.lastSeq !== null) {
      const d = (seq - state.lastSeq) & 0xffff;
      if (d >= 1 && d < 32768) {
        for (let k = 1; k < d && k <= 512; k++) state.missing.add((state.lastSeq + k) & 0xffff);
        state.lost += d - 1;
        state.lastSeq = seq;
      } else if (d >= 32768 && state.missing.delete(seq)) state.lost--;
    } else state.lastSeq = seq;
    if (state.missing.size > 4096) state.missing.clear();
  }
  if (state.mode === "stream") state.pending.push({ bytes, rxUs });
}

function flushBatch() {
  if (!state.relay || !state.pending.length) return;
  while (state.pending.length) {
    const chunk = state.pending.splice(0, 256);
    state.relay.sendRaw(state.batchSeq, encodeRawBatch(state.batchSeq, chunk));
    state.batchSeq++;
  }
}

function newSessionId() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  const rnd = Math.random().toString(36).slice(2, 6);
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}-${rnd}`;
}

function deviceInfo() {
  const d = state.source?.device || {};
  const out = {};
  for (const k of ["name", "address", "firmware", "hardware", "serial"]) if (d[k]) out[k] = String(d[k]).slice(0, 128);
  return out;
}

function sendInfo() {
  if (!state.relay || state.mode !== "stream") return;
  const s = { type: "info", time_utc_s: Date.now() / 1000, ble: state.bleState };
  if (state.battery !== null) s.battery_pct = state.battery;
  state.relay.sendStatus(s);
}

$("start").addEventListener("click", async () => {
  if (!state.source) return;
  cues.prime();
  resetLive();
  state.mode = "stream";
  state.session = newSessionId();
  state.batchSeq = 0;
  state.pending = [];
  state.relay = new Relay({ session: state.session }, { onMessage, onState: renderLink });
  const start = {
    type: "start",
    time_utc_s: Date.now() / 1000,
    start_utc_s: Date.now() / 1000,
    ble: state.bleState === "connected" ? "connected" : "reconnecting",
    sample_rate_hz: state.source.rate,
    device: deviceInfo(),
    app: `imu web (${navigator.userAgent.replace(/[^\x20-\x7e]/g, "")})`.slice(0, 128),
  };
  if (state.battery !== null) start.battery_pct = state.battery;
  state.relay.sendStatus(start);
  showLive(`Your run · ${state.session}`);
  state.timers.push(setInterval(flushBatch, BATCH_MS));
  state.timers.push(setInterval(sendInfo, 30000));
  state.timers.push(setInterval(renderLink, 1000));
  $("start").disabled = true;
  $("stop").disabled = false;
  document.body.classList.add("running");
  try {
    await state.source.start();
    if (state.source instanceof ReplaySource) state.source.done.then(() => stopRun());
  } catch (err) {
    $("sensor-state").textContent = `could not start: ${err.message || err}`;
  }
});

$("stop").addEventListener("click", () => stopRun());

async function stopRun() {
  if (state.mode !== "stream" || state.stopping) return;
  state.stopping = true;
  $("stop").disabled = true;
  await state.source.stop();
  flushBatch();
  for (const t of state.timers.splice(0)) clearInterval(t);
  state.relay.sendStatus({ type: "stop", time_utc_s: Date.now() / 1000, ble: state.bleState });
  state.timers.push(setInterval(renderLink, 1000));
  $("live-title").textContent = `Finishing · ${state.session} (sending the rest)`;
  await state.relay.drain(120000);
  state.stopping = false;
  document.body.classList.remove("running");
  $("start").disabled = false;
  renderLink();
}

// --- watch (clinic) ----------------------------------------------------------------------------
$("watch-form").addEventListener("submit", (e) => {
  e.preventDefault();
  stopWatching();
  const runner = $("watch-runner").value.trim();
  resetLive();
  state.mode = "watch";
  state.watchRunner = runner;
  state.session = null;
  state.relay = new Relay(
    { watch: runner },
    {
      onMessage,
      onState: (s, why) => {
        $("watch-state").textContent =
          s === "online" ? `Watching ${runner}: waiting for steps…` : `${s}${why ? `: ${why}` : ""}`;
        renderLink();
      },
    },
  );
  showLive(`Watching ${runner}`);
  $("unwatch").disabled = false;
});
$("unwatch").addEventListener("click", stopWatching);

function stopWatching() {
  if (state.mode !== "watch") return;
  state.relay?.close();
  state.relay = null;
  state.mode = null;
  $("unwatch").disabled = true;
  $("watch-state").textContent = "Stopped watching.";
}

// --- messages from the server ------------------------------------------------------------------
function onMessage(m) {
  if (m.type === "error") {
    console.warn("relay error", m);
    if (m.reason === "broker") $("sensor-state").textContent = `server: ${m.detail}`;
    return;
  }
  if (m.type !== "msg") return;
  if (state.mode === "watch") {
    if (!state.sessionsSeen.has(m.session)) {
      state.sessionsSeen.add(m.session);
      if (!state.session || m.kind === "steps") switchWatchedSession(m.session);
    }
    if (m.session !== state.session) return;
  }
  const msg = m.msg;
  if (msg.type === "steps") addSteps(msg.steps || []);
  else if (msg.type === "alerts") addAlerts(msg.alerts || []);
  else if (msg.type === "summary") showSummary(msg);
}

function switchWatchedSession(session) {
  if (state.session === session) return;
  resetLive();
  state.session = session;
  $("live-title").textContent = `Watching ${state.watchRunner} · ${session}`;
  $("watch-state").textContent = `Live: ${state.watchRunner} · ${session}`;
}

function addSteps(steps) {
  for (const s of steps) {
    if (state.stepTimes.has(s.time_s)) continue; // re-delivered after a reconnect
    state.stepTimes.add(s.time_s);
    state.steps.push(s);
  }
  if (state.steps.length > 2000) state.steps.splice(0, state.steps.length - 2000);
  renderSteps();
}

function addAlerts(alerts) {
  for (const a of alerts) {
    const key = `${a.code}|${a.side}`;
    state.alertLog.push(a);
    if (a.active) {
      const isNew = !state.alerts.has(key);
      state.alerts.set(key, a);
      if (isNew && state.mode === "stream") cues.alert(a);
      else if (isNew && state.mode === "watch" && !cues.muted) cues.alert(a);
    } else state.alerts.delete(key);
  }
  renderAlerts();
}

// --- rendering ---------------------------------------------------------------------------------
let chart = null;

function showLive(title) {
  $("live").hidden = false;
  $("live-title").textContent = title;
  $("summary").hidden = true;
  if (!chart) {
    const width = Math.min($("chart").clientWidth || 340, 900);
    chart = new uPlot(
      {
        width,
        height: 160,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: false } },
        axes: [
          { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, size: 28 },
          { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, size: 36 },
        ],
        series: [
          {},
          { label: "left", stroke: "#1f77b4", width: 2, spanGaps: true, points: { size: 5 } },
          { label: "right", stroke: "#d95f02", width: 2, spanGaps: true, points: { size: 5 } },
        ],
      },
      [[], [], []],
      $("chart"),
    );
    new ResizeObserver(() => chart.setSize({ width: Math.min($("chart").clientWidth, 900), height: 160 })).observe($("chart"));
  }
  renderSteps();
  renderAlerts();
  renderLink();
}

function resetLive() {
  state.steps = [];
  state.stepTimes = new Set();
  state.alerts = new Map();
  state.alertLog = [];
  state.packets = 0;
  state.lost = 0;
  state.lastSeq = null;
  state.missing = new Set();
  state.sessionsSeen = new Set();
  renderSteps();
  renderAlerts();
}

const mean = (xs) => {
  const v = xs.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
};
const fmt = (v, digits = 0, scale = 1) => (v === null ? "–" : (v * scale).toFixed(digits));

function renderSteps() {
  const running = state.steps.filter((s) => s.activity !== "standing");
  const side = (name) => running.filter((s) => s.side === name).slice(-10);
  const left = side("left");
  const right = side("right");
  $("cadence").textContent = fmt(mean(running.slice(-10).map((s) => s.cadence_spm)));
  $("contact-left").textContent = fmt(mean(left.map((s) => s.contact_time_s)), 0, 1000);
  $("contact-right").textContent = fmt(mean(right.map((s) => s.contact_time_s)), 0, 1000);
  $("drop-left").textContent = fmt(mean(left.map((s) => s.pelvic_drop_deg)), 1);
  $("drop-right").textContent = fmt(mean(right.map((s) => s.pelvic_drop_deg)), 1);
  $("live-steps").textContent = `${state.steps.length} steps`;
  if (chart) {
    const last = state.steps.slice(-60);
    const xs = last.map((_, i) => i - last.length + 1);
    chart.setData([
      xs,
      last.map((s) => (s.side === "left" ? s.pelvic_drop_deg : null)),
      last.map((s) => (s.side === "right" ? s.pelvic_drop_deg : null)),
    ]);
  }
}

function renderAlerts() {
  const box = $("alerts");
  box.replaceChildren();
  for (const a of state.alerts.values()) {
    const div = document.createElement("div");
    div.className = `banner ${a.level || "warning"}`;
    div.dataset.testid = "alert-banner";
    div.setAttribute("data-testid", "alert-banner");
    const [what, ...cue] = String(a.message || a.code).split(": ");
    const strong = document.createElement("strong");
    strong.textContent = cue.length ? cue.join(": ") : what;
    const small = document.createElement("span");
    small.textContent = cue.length ? what : "";
    div.append(strong, small);
    box.append(div);
  }
  const log = $("alert-log");
  log.replaceChildren(
    ...state.alertLog.slice(-50).reverse().map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.active ? "⚠" : "✓"} ${clock(a.time_s)} ${a.message}`;
      return li;
    }),
  );
}

function clock(t) {
  if (!Number.isFinite(t)) return "";
  const s = Math.round(t);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function renderLink() {
  const r = state.relay;
  $("l-packets").textContent = state.mode === "watch" ? "–" : String(state.packets);
  $("l-lost").textContent = state.mode === "watch" ? "–" : String(state.lost);
  $("l-ble").textContent = String(state.source?.reconnects ?? 0);
  $("l-net").textContent = r ? (r.ready ? "online" : "offline") : "–";
  $("l-net").className = r && !r.ready ? "bad" : "";
  $("l-netrc").textContent = String(r?.reconnects ?? 0);
  $("l-buf").textContent = r ? `${r.buffered}${r.dropped ? ` (${r.dropped} dropped)` : ""}` : "0";
  $("l-bat").textContent = state.battery === null ? "–" : `${Math.round(state.battery)} %`;
}

function showSummary(msg) {
  state.alerts.clear(); // the session is over: no active alert any more
  renderAlerts();
  const s = msg.summary || {};
  const b = msg.bridge || {};
  const dec = s.decoder || {};
  const el = $("summary");
  el.hidden = false;
  el.replaceChildren();
  const h = document.createElement("div");
  h.className = "chart-title";
  h.textContent = "Session finished";
  const p = document.createElement("p");
  p.textContent = `${s.steps ?? state.steps.length} steps · ${b.packets_in ?? "?"} packets at the server · ${dec.packets_lost ?? 0} lost`;
  el.append(h, p);
  const runner = state.mode === "watch" ? state.watchRunner : state.user;
  const a = document.createElement("a");
  a.href = `/reports/${encodeURIComponent(runner)}/${encodeURIComponent(state.session)}/report.html`;
  a.target = "_blank";
  a.rel = "noopener";
  a.textContent = "Open the report";
  a.dataset.testid = "report-link";
  el.append(a);
  $("live-title").textContent = `Finished · ${state.session}`;
}

// --- reports -----------------------------------------------------------------------------------
$("reports-form").addEventListener("submit", (e) => {
  e.preventDefault();
  loadSessions();
});

async function loadSessions() {
  const runner = $("reports-runner").value.trim() || state.user;
  const ul = $("sessions");
  $("reports-state").textContent = "Loading…";
  try {
    const res = await api(`/api/sessions?runner=${encodeURIComponent(runner)}`);
    ul.replaceChildren(
      ...res.sessions.map((s) => {
        const li = document.createElement("li");
        const when = s.start_utc_s ? new Date(s.start_utc_s * 1000).toLocaleString() : s.session;
        const dur = s.duration_s ? ` · ${Math.round(s.duration_s / 60)} min` : "";
        const steps = s.steps ? ` · ${s.steps} steps` : "";
        const t = document.createElement("span");
        t.textContent = `${when}${dur}${steps}`;
        const a = document.createElement("a");
        a.href = s.report;
        a.target = "_blank";
        a.rel = "noopener";
        a.textContent = "Report";
        const w = document.createElement("button");
        w.className = "link";
        w.textContent = "Watch";
        w.addEventListener("click", () => {
          $("watch-runner").value = runner;
          document.querySelector('[data-tab="watch"]').click();
          $("watch-form").requestSubmit();
        });
        li.append(t, a, w);
        return li;
      }),
    );
    $("reports-state").textContent = res.store
      ? `${res.sessions.length} session(s) of ${runner}`
      : res.reports
        ? `${res.sessions.length} report(s) of ${runner}`
        : "This server has no store or reports directory (start it with --store or --reports).";
  } catch (err) {
    ul.replaceChildren();
    $("reports-state").textContent = String(err.message || err);
  }
}
