// Spoken and vibration cues for alerts: only for alerts that become active (the server's alert
// engine already applies grace periods and cool-downs), at most one utterance per MIN_GAP_MS,
// nothing while muted.
const MIN_GAP_MS = 15000;

export class Cues {
  constructor() {
    this.muted = localStorage.getItem("imu.muted") === "1";
    this.lastSpoken = -Infinity;
    this.spoken = [];
    this.skipped = 0;
  }
  setMuted(m) {
    this.muted = m;
    localStorage.setItem("imu.muted", m ? "1" : "0");
    if (m) window.speechSynthesis?.cancel();
  }
  /** Call from a click handler: mobile browsers only speak after a user gesture. */
  prime() {
    try {
      const u = new SpeechSynthesisUtterance("");
      window.speechSynthesis?.speak(u);
    } catch {
      /* no speech */
    }
  }
  alert(alert) {
    if (this.muted) return false;
    const now = performance.now();
    if (now - this.lastSpoken < MIN_GAP_MS) {
      this.skipped++;
      return false;
    }
    this.lastSpoken = now;
    const text = spokenText(alert);
    this.spoken.push(text);
    if (navigator.vibrate) navigator.vibrate(alert.level === "critical" ? [300, 150, 300, 150, 300] : [250, 120, 250]);
    if (window.speechSynthesis && window.SpeechSynthesisUtterance) {
      const u = new SpeechSynthesisUtterance(text);
      u.rate = 1.05;
      window.speechSynthesis.speak(u);
    }
    return true;
  }
}

const LABELS = {
  pelvic_drop_deg: "Pelvic drop",
  pelvic_drop_asymmetry_deg: "Uneven pelvic drop",
  contact_time_s: "Ground contact",
  contact_time_balance_pct: "Contact balance",
  vertical_oscillation_m: "Bouncing",
  cadence_spm: "Cadence",
};

/** What is spoken: the metric and the cue the runner can act on (the part after ": "). */
export function spokenText(a) {
  const msg = a.message || a.code || "form alert";
  const i = msg.lastIndexOf(": ");
  const cue = (i >= 0 ? msg.slice(i + 2) : msg).replace(/\+5-10 %/g, "5 to 10 percent up").replace(/\(about [^)]*\)/g, "");
  const label = LABELS[a.metric] || "Form";
  const side = a.side === "left" || a.side === "right" ? ` ${a.side}` : "";
  return `${label}${side}. ${cue}`.slice(0, 160);
}
