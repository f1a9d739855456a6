// The live page: the picture from /stream.mjpg drawn on a canvas (each part carries its capture time, so the
// page measures capture -> decoded itself), results from /events, state from /api/state, and the controls,
// which POST JSON to /api/control. Everything reconnects by itself when the server comes back.
"use strict";

const $ = (id) => document.getElementById(id);
const picture = $("picture");
const context = picture.getContext("2d");
// read by tests and benchmarks: frames decoded, capture -> decoded latencies (ms), the last result
const stats = (window.detectorStats = { frames: 0, latencies: [], events: 0, lastEvent: null, lastFrame: -1 });
let state = {};

if (location.search.includes("token=")) {
  history.replaceState(null, "", location.pathname); // the server has set its cookie: no token in the bar
}

function setConnection(text, bad) {
  $("connection").textContent = text;
  $("connection").classList.toggle("bad", bad);
}

// --- the picture -----------------------------------------------------------------------------------

const CRLF2 = [13, 10, 13, 10];

function indexOf(buffer, pattern, from) {
  outer: for (let i = from; i <= buffer.length - pattern.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (buffer[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

// Splits the multipart stream into parts; returns the complete ones and keeps the rest for next time.
function takeParts(pending) {
  const parts = [];
  let at = 0;
  for (;;) {
    const headEnd = indexOf(pending, CRLF2, at);
    if (headEnd < 0) break;
    const head = new TextDecoder().decode(pending.subarray(at, headEnd));
    const field = (name) => (head.match(new RegExp(name + ":\\s*([^\\r\\n]+)", "i")) || [])[1];
    const length = Number(field("Content-Length"));
    const bodyStart = headEnd + 4;
    if (pending.length < bodyStart + length + 2) break;
    parts.push({
      jpeg: pending.slice(bodyStart, bodyStart + length),
      frame: Number(field("X-Frame")),
      captured: Number(field("X-Capture-Time")),
    });
    at = bodyStart + length + 2;
  }
  return { parts, rest: pending.slice(at) };
}

async function show(part) {
  const bitmap = await createImageBitmap(new Blob([part.jpeg], { type: "image/jpeg" }));
  if (picture.width !== bitmap.width || picture.height !== bitmap.height) {
    picture.width = bitmap.width;
    picture.height = bitmap.height;
  }
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const latency = (performance.timeOrigin + performance.now()) - part.captured * 1000;
  stats.latencies.push(latency);
  if (stats.latencies.length > 600) stats.latencies.shift();
  stats.frames += 1;
  stats.lastFrame = part.frame;
  $("page_frames").textContent = stats.frames;
  if (stats.frames % 10 === 0) $("page_latency").textContent = latency.toFixed(0) + " ms";
}

async function stream() {
  for (;;) {
    try {
      const response = await fetch("/stream.mjpg", { cache: "no-store" });
      if (!response.ok) throw new Error(response.status + " " + (await response.text()).trim());
      setConnection("live", false);
      const reader = response.body.getReader();
      let pending = new Uint8Array(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the server closed the stream");
        const joined = new Uint8Array(pending.length + value.length);
        joined.set(pending);
        joined.set(value, pending.length);
        const { parts, rest } = takeParts(joined);
        pending = rest;
        if (parts.length) await show(parts[parts.length - 1]); // only the newest: older ones are late already
      }
    } catch (error) {
      setConnection("reconnecting: " + error.message, true);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

// --- results and state -------------------------------------------------------------------------------

function showResult(result) {
  stats.events += 1;
  stats.lastEvent = result;
  $("frame").textContent = "frame " + result.frame;
  const items = result.detections.map((d) => {
    const item = document.createElement("li");
    const id = d.track_id !== undefined && d.track_id >= 0 ? " #" + d.track_id : "";
    item.textContent = `${d.class_name}${id} ${d.confidence.toFixed(2)}`;
    return item;
  });
  $("detections").replaceChildren(...items);
  if (result.counts) showCounts(result.counts);
}

function showCounts(counts) {
  const lines = Object.entries(counts).map(([name, c]) => {
    const parts = Object.entries(c).map(([k, v]) => {
      const total = Object.values(v).reduce((a, b) => a + b, 0);
      return `${k} ${total}`;
    });
    const line = document.createElement("div");
    line.textContent = `${name}: ${parts.join(", ")}`;
    return line;
  });
  $("counts").replaceChildren(...lines);
}

function events() {
  const source = new EventSource("/events"); // reconnects by itself after a network error (retry: 1000)
  source.onmessage = (message) => showResult(JSON.parse(message.data));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) setTimeout(events, 1000); // an HTTP error ends it: start anew
  };
}

function showState(s) {
  state = s;
  for (const name of ["camera_fps", "model_fps", "latency_ms_p50", "latency_ms_p95", "dropped", "viewers"]) {
    const value = s[name];
    $(name).textContent = value === null || value === undefined ? "-" : Number(value).toFixed(name === "dropped" || name === "viewers" ? 0 : 1);
  }
  $("source").textContent = s.source || "";
  $("pause").textContent = s.paused ? "resume" : "pause";
  $("pause").classList.toggle("on", s.paused);
  $("record").classList.toggle("on", s.recording);
  $("hud_toggle").classList.toggle("on", s.hud);
  $("conf_value").textContent = s.conf.toFixed(2);
  if (document.activeElement !== $("conf")) $("conf").value = s.conf;
  if (document.activeElement !== $("classes")) $("classes").value = (s.classes || []).join(", ");
  if ($("names").children.length !== (s.names || []).length) {
    $("names").replaceChildren(...s.names.map((n) => Object.assign(document.createElement("option"), { value: n })));
  }
  if (s.counts && Object.keys(s.counts).length) showCounts(s.counts);
}

async function pollState() {
  for (;;) {
    try {
      const response = await fetch("/api/state", { cache: "no-store" });
      if (response.ok) showState(await response.json());
    } catch (error) {
      // the stream's loop says so; keep asking
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// --- the controls: the window's keys and buttons, one request each ------------------------------------

async function control(body) {
  const response = await fetch("/api/control", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error);
  showState(answer);
  return answer;
}

function download(url) {
  const link = Object.assign(document.createElement("a"), { href: url, download: "" });
  document.body.appendChild(link);
  link.click();
  link.remove();
}

async function snapshot() {
  const answer = await control({ snapshot: true });
  download(answer.snapshot.png);
  download(answer.snapshot.json);
}

const actions = {
  pause: () => control({ pause: !state.paused }),
  snapshot: snapshot,
  record: () => control({ record: !state.recording }),
  hud: () => control({ hud: !state.hud }),
  conf: (step) => control({ conf: Math.round((state.conf + step) * 100) / 100 }),
};

$("pause").onclick = actions.pause;
$("snapshot").onclick = actions.snapshot;
$("record").onclick = actions.record;
$("hud_toggle").onclick = actions.hud;
$("conf").oninput = () => ($("conf_value").textContent = Number($("conf").value).toFixed(2));
$("conf").onchange = () => control({ conf: Number($("conf").value) });
$("classes").onchange = () => {
  const names = $("classes").value.split(",").map((c) => c.trim()).filter(Boolean);
  control({ classes: names.length ? names : null }).catch((error) => setConnection(error.message, true));
};
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT") return;
  const act = {
    " ": actions.pause, s: actions.snapshot, r: actions.record, h: actions.hud,
    "+": () => actions.conf(0.05), "=": () => actions.conf(0.05), "-": () => actions.conf(-0.05),
  }[event.key];
  if (act) {
    event.preventDefault();
    act();
  }
});

stream();
events();
pollState();
