// The admin page: this process's health, rooms, presence, counters, evictions and
// errors (GET admin/overview, every second), and a roomcast.js connection of its
// own to publish and to watch rooms live. Everything shown is put in the page with
// textContent, never as HTML. Manual: docs/client.md, "Admin page".
import { Roomcast, describeState } from "../roomcast.js"; // relative: works under any prefix

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const SVG = "http://www.w3.org/2000/svg";
const KEY = "roomcast.admin.key"; // sessionStorage: this tab only
const POLL = 1000; // ms between overviews
const RETRY = 3000; // ms before asking again after a failure
const POINTS = 120; // chart samples: two minutes
const RATE_WINDOW = 5; // seconds of room offsets a message rate is measured over
const TAIL = 50; // lines kept in the watch list
const WIDTH = 240;
const HEIGHT = 60;

const sum = (object) => Object.values(object).reduce((a, b) => a + b, 0);
const CHARTS = [
  { id: "connections", title: "Connections", value: (o) => o.totals.connections },
  { id: "publishes", title: "Publishes/s", rate: (t) => t.published },
  { id: "deliveries", title: "Deliveries/s", rate: (t) => t.delivered },
  { id: "evictions", title: "Evictions", value: (o) => sum(o.totals.evictions) },
  { id: "latency", title: "Latency, ms", latency: true, about: "from publish to fan-out, mean" },
];

let key = sessionStorage.getItem(KEY) || "";
let client = null;
let timer = 0;
let generation = 0; // bumped on sign-in and sign-out: answers to older requests are dropped
const previous = new Map(); // node -> that process's last overview, for the rates between two
let incidentsShown = "";
let signingIn = false; // the sign-in form was sent: focus moves to the overview once shown
const rooms = new Map(); // room -> { row, cells, samples }
const watched = new Map(); // room -> functions that remove its listeners
const charts = new Map(); // id -> { figure, value, line, area, scale, values }

function format(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Number.isInteger(value) || Math.abs(value) >= 100) return Math.round(value).toLocaleString();
  const fixed = { maximumFractionDigits: digits, minimumFractionDigits: digits };
  return value.toLocaleString(undefined, fixed);
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// -- signing in and out -------------------------------------------------------------

function setStatus(detail) {
  const status = $("status");
  status.dataset.state = detail.state;
  status.textContent = describeState(detail);
}

function startClient() {
  if (client) return;
  client = new Roomcast({ token: key || null, name: "admin" });
  client.on("state", setStatus);
  window.roomcastAdmin = client; // for the console and for tests
}

function stopClient() {
  for (const off of watched.values()) off();
  watched.clear();
  client?.close();
  client = null;
  setStatus({ state: "idle" });
}

function showSignIn(message) {
  stopClient();
  clearTimeout(timer);
  $("overview").hidden = true;
  $("admin-nav").hidden = true;
  $("signout").hidden = true;
  const form = $("signin-form");
  form.hidden = false;
  const error = $("signin-error");
  error.textContent = message;
  error.hidden = !message;
  const input = $("key-input");
  input.value = "";
  input.focus();
}

function refusal(status, detail) {
  if (!key) {
    return `The server needs an API key or an admin token for this page (${status}: ${detail}).`;
  }
  if (status === 403) {
    return `That key or token is valid, but not an administrator's (403: ${detail}).`;
  }
  return `That key or token was refused (${status}: ${detail}).`;
}

function showOff(status) {
  stopClient();
  $("overview").hidden = true;
  $("signin-form").hidden = true;
  const off = $("notice");
  off.hidden = false;
  off.textContent =
    `The admin page is off on this server (${status}): ROOMCAST_ADMIN=false, or ` +
    "ROOMCAST_AUTH=off on an address other than loopback (docs/client.md).";
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  generation += 1;
  signingIn = true;
  $("signin-error").hidden = true;
  poll();
});

$("signout").addEventListener("click", () => {
  key = "";
  sessionStorage.removeItem(KEY);
  generation += 1;
  previous.clear();
  showSignIn("");
});

// -- the overview ---------------------------------------------------------------------

let polling = false; // one request at a time: a poll asked for meanwhile runs after it
let pollAgain = false;

async function poll() {
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
  if (pollAgain) {
    pollAgain = false;
    poll();
  }
}

/** Ask for the overview and show it; the next poll is set for later (one timer). */
async function pollOnce() {
  const mine = generation;
  clearTimeout(timer);
  const url = new URL("admin/overview", location.href);
  const match = $("room-filter").value.trim();
  if (match) url.searchParams.set("match", match);
  let reply;
  try {
    reply = await fetch(url, {
      headers: key ? { Authorization: `Bearer ${key}` } : {},
      cache: "no-store",
    });
  } catch {
    if (mine === generation) stale("the server does not answer");
    return;
  }
  if (mine !== generation) return;
  if (reply.status === 401 || reply.status === 403) {
    const body = await reply.json().catch(() => ({}));
    if (mine === generation) showSignIn(refusal(reply.status, body.detail || "refused"));
    return;
  }
  if (reply.status === 404) {
    showOff(reply.status);
    return;
  }
  if (!reply.ok) {
    stale(`the overview failed (${reply.status})`);
    return;
  }
  const overview = await reply.json();
  if (mine !== generation) return;
  show(overview);
  timer = setTimeout(poll, POLL);
}

function stale(reason) {
  const main = $("overview");
  main.dataset.stale = "true";
  card("health-state", false, "no answer", reason);
  if (main.hidden && $("signin-form").hidden) {
    const notice = $("notice");
    notice.hidden = false;
    notice.textContent = `No overview yet: ${reason}. Trying again…`;
  }
  timer = setTimeout(poll, RETRY);
}

function show(overview) {
  const main = $("overview");
  if (main.hidden) {
    $("signin-form").hidden = true;
    $("notice").hidden = true;
    main.hidden = false;
    $("admin-nav").hidden = false;
    $("signout").hidden = !key; // nothing to sign out of without a key (auth=off, loopback)
    startClient();
    if (signingIn) document.getElementById("rooms-title").focus(); // not lost with the form
  }
  signingIn = false;
  main.dataset.stale = "false";
  main.dataset.node = overview.node;
  showHealth(overview);
  showCharts(overview);
  showRooms(overview);
  showIncidents(overview);
  if (previous.size > 64) previous.clear(); // workers come and go
  previous.set(overview.node, overview);
}

function card(id, ok, value, detail) {
  const node = $(id);
  node.dataset.ok = String(ok);
  node.querySelector(".value").textContent = value;
  node.querySelector(".detail").textContent = detail;
}

function showHealth(o) {
  const h = o.health;
  const broker = [h.broker_kind, `${h.broker_reconnects} reconnects`];
  if (h.degraded.length) broker.push(`degraded: ${h.degraded.join(", ")}`);
  const brokerOk = h.broker && !h.degraded.length;
  card("health-broker", brokerOk, h.broker ? "ok" : "unavailable", broker.join(" · "));
  card("health-database", h.database, h.database ? "ok" : "unreachable", h.database_kind);
  const state = h.draining ? "draining" : h.ready ? "serving" : "not ready";
  const presence = `presence ${h.presence ? "on" : "off"}`;
  card("health-state", h.ready, state, `${presence} · updated ${clock(o.now)}`);
  const t = o.totals;
  card(
    "health-process",
    true,
    `pid ${o.pid}`,
    `node ${o.node} · up ${duration(o.now - o.started)} · ${t.websockets} WS, ` +
      `${t.sse_streams} SSE, ${t.subscriptions} subscriptions`,
  );
}

// -- charts -----------------------------------------------------------------------------

function chart(spec) {
  const figure = element("figure", "chart-card");
  figure.dataset.testid = `chart-${spec.id}`;
  const caption = element("figcaption");
  const label = element("span", "label", spec.title);
  const value = element("span", "value", "—");
  caption.append(label, value);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const about = spec.about ? ` (${spec.about})` : "";
  svg.setAttribute("aria-label", `${spec.title}${about}, last two minutes`);
  if (spec.about) figure.title = spec.about;
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("class", "area");
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("class", "line");
  svg.append(area, line);
  const scale = element("span", "scale", "");
  figure.append(caption, svg, scale);
  $("charts").append(figure);
  return { figure, value, line, area, scale, values: [] };
}

function sampleOf(spec, o, before) {
  if (spec.value) return spec.value(o);
  if (!before || o.now <= before.now) return null; // this worker's first answer
  const seconds = o.now - before.now;
  if (spec.rate) return Math.max(0, spec.rate(o.totals) - spec.rate(before.totals)) / seconds;
  const count = o.totals.latency_count - before.totals.latency_count;
  if (count <= 0) return 0;
  return ((o.totals.latency_sum - before.totals.latency_sum) / count) * 1000;
}

function showCharts(o) {
  for (const spec of CHARTS) {
    if (!charts.has(spec.id)) charts.set(spec.id, chart(spec));
    const c = charts.get(spec.id);
    const sample = sampleOf(spec, o, previous.get(o.node)); // counters are per process
    if (sample === null) continue;
    c.values.push(sample);
    if (c.values.length > POINTS) c.values.shift();
    c.value.textContent = format(sample, spec.value ? 0 : 1);
    c.figure.dataset.value = String(sample);
    draw(c);
  }
}

function draw(c) {
  const high = Math.max(...c.values, 1) * 1.1; // from zero, with headroom
  // The full width from the first sample on; once POINTS are kept, it scrolls.
  const step = WIDTH / Math.max(c.values.length - 1, 1);
  const points = c.values.map((v, i) => {
    const x = i * step;
    const y = HEIGHT - 1 - (v / high) * (HEIGHT - 2);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  c.line.setAttribute("points", points.join(" "));
  const last = ((c.values.length - 1) * step).toFixed(1);
  c.area.setAttribute("points", `0,${HEIGHT} ${points.join(" ")} ${last},${HEIGHT}`);
  c.scale.textContent = `max ${format(Math.max(...c.values), 1)} · last ${duration(c.values.length)}`;
}

// -- rooms --------------------------------------------------------------------------------

function addRow(name) {
  const row = document.createElement("tr");
  row.dataset.room = name;
  const title = element("th", "room-name", name);
  title.scope = "row";
  const cells = {
    subscribers: element("td", "num"),
    rate: element("td", "num"),
    offset: element("td", "num"),
    presence: element("td", "presence-cell"),
  };
  for (const [field, cell] of Object.entries(cells)) cell.dataset.field = field;
  const actions = element("td", "actions");
  const publish = element("button", "", "Publish here");
  publish.type = "button";
  publish.dataset.testid = "publish-here";
  publish.setAttribute("aria-label", `Publish to ${name}`);
  publish.addEventListener("click", () => {
    $("publish-room").value = name;
    $("publish-data").focus();
  });
  const watch = element("button", "", "Watch");
  watch.type = "button";
  watch.dataset.testid = "watch";
  watch.setAttribute("aria-label", `Watch ${name}`);
  watch.setAttribute("aria-pressed", String(watched.has(name)));
  watch.addEventListener("click", () => toggleWatch(name, watch));
  actions.append(publish, watch);
  row.append(title, cells.subscribers, cells.rate, cells.offset, cells.presence, actions);
  const entry = { row, cells, samples: [] };
  rooms.set(name, entry);
  return entry;
}

function rateOf(entry, r, now) {
  const samples = entry.samples;
  if (r.offset === null) return null;
  if (samples.length && samples[samples.length - 1].epoch !== r.epoch) samples.length = 0;
  samples.push({ t: now, epoch: r.epoch, offset: r.offset });
  while (samples.length > 2 && now - samples[0].t > RATE_WINDOW) samples.shift();
  if (samples.length < 2) return null;
  const first = samples[0];
  const last = samples[samples.length - 1];
  return (last.offset - first.offset) / Math.max(last.t - first.t, 0.001);
}

function presenceText(presence) {
  if (presence === null) return "—";
  if (presence.connections === 0) return "nobody";
  const names = presence.members.map((m) =>
    m.connections > 1 ? `${m.user} ×${m.connections}` : m.user,
  );
  const listed = presence.members.reduce((n, m) => n + m.connections, 0);
  const more = presence.connections - listed;
  return names.join(", ") + (more > 0 ? ` +${more} more` : "");
}

function showRooms(o) {
  const seen = new Set();
  for (const r of o.rooms) {
    seen.add(r.room);
    const entry = rooms.get(r.room) || addRow(r.room);
    const { row, cells } = entry;
    const rate = rateOf(entry, r, o.now);
    row.dataset.subscribers = String(r.subscribers);
    row.dataset.rate = String(rate ?? 0);
    cells.subscribers.textContent = String(r.subscribers);
    cells.subscribers.title = `${r.websockets} WebSocket, ${r.sse_streams} SSE`;
    cells.rate.textContent = rate === null ? "—" : format(rate);
    cells.offset.textContent = r.offset === null ? "—" : String(r.offset);
    cells.presence.textContent = presenceText(r.presence);
    cells.presence.title = r.presence
      ? `${r.presence.connections} connections in presence, on every process`
      : "";
  }
  for (const [name, entry] of rooms) {
    if (!seen.has(name)) {
      entry.row.remove();
      rooms.delete(name);
    }
  }
  const body = $("rooms");
  const focused = document.activeElement;
  [...rooms.keys()].sort().forEach((name, i) => {
    const row = rooms.get(name).row;
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  body.querySelector(".empty")?.remove();
  if (rooms.size === 0) {
    const row = element("tr", "empty");
    const cell = element("td", "", "No room has a subscriber on this process.");
    cell.colSpan = 6;
    row.append(cell);
    body.append(row);
  }
  if (focused?.isConnected && document.activeElement !== focused) focused.focus();
  const shown = o.rooms.length;
  $("rooms-caption").textContent =
    shown < o.rooms_total
      ? `Rooms with subscribers on this process: the ${shown} busiest of ${o.rooms_total}`
      : `Rooms with subscribers on this process: ${o.rooms_total}`;
  const options = document.getElementById("room-names");
  const names = [...rooms.keys()].sort();
  if (options.dataset.names !== names.join("\n")) {
    options.dataset.names = names.join("\n");
    options.replaceChildren(
      ...names.map((name) => Object.assign(document.createElement("option"), { value: name })),
    );
  }
}

$("room-filter").addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(poll, 250);
});

// -- publishing and watching (roomcast.js) -----------------------------------------------

$("publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const result = $("publish-result");
  const room = $("publish-room").value.trim();
  const input = $("publish-data");
  const raw = input.value;
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    data = { text: raw };
  }
  if (!client) return;
  result.dataset.state = "pending";
  result.textContent = "publishing…";
  try {
    const ack = await client.room(room).publish(data);
    result.dataset.state = "ok";
    result.textContent = `Published to ${room} at offset ${ack.offset}.`;
    input.value = "";
  } catch (err) {
    result.dataset.state = "failed";
    const code = err.code && err.code !== err.message ? ` (${err.code})` : "";
    result.textContent = `Not published: ${err.message}${code}.`;
  }
});

function tail(room, kind, who, what, ts = Date.now() / 1000) {
  const item = element("li", `tail-${kind}`);
  item.dataset.room = room;
  item.dataset.kind = kind;
  const time = element("time", "", clock(ts));
  time.dateTime = new Date(ts * 1000).toISOString();
  item.append(
    time,
    element("span", "tail-room", room),
    element("span", "tail-who", who),
    element("span", "tail-what", what),
  );
  const list = $("tail");
  list.prepend(item);
  while (list.children.length > TAIL) list.lastElementChild.remove();
}

function toggleWatch(name, button) {
  if (!client) return;
  const room = client.room(name);
  if (watched.has(name)) {
    watched.get(name)();
    watched.delete(name);
    button.setAttribute("aria-pressed", "false");
    tail(name, "info", "", "stopped watching");
    return;
  }
  const offs = [
    room.on("message", (e) => tail(name, "message", e.sender, JSON.stringify(e.data), e.ts)),
    room.on("join", (e) => tail(name, "join", e.user, "joined")),
    room.on("leave", (e) => tail(name, "leave", e.user, "left")),
    room.on("reset", () => tail(name, "info", "", "history lost: a new stream")),
  ];
  const stop = () => {
    offs.forEach((off) => off());
    room.unsubscribe().catch(() => {});
  };
  watched.set(name, stop);
  button.setAttribute("aria-pressed", "true");
  tail(name, "info", "", "watching");
  room.subscribe().catch((err) => {
    if (watched.get(name) !== stop) return;
    stop();
    watched.delete(name);
    button.setAttribute("aria-pressed", "false");
    tail(name, "info", "", `could not watch: ${err.message}`);
  });
}

// -- evictions and errors ------------------------------------------------------------------

function fill(body, rows, columns, empty) {
  body.replaceChildren();
  if (rows.length === 0) {
    const row = element("tr", "empty");
    const cell = element("td", "", empty);
    cell.colSpan = columns;
    row.append(cell);
    body.append(row);
    return;
  }
  for (const cellsOf of rows) {
    const row = document.createElement("tr");
    for (const [text, className] of cellsOf) row.append(element("td", className || "", text));
    body.append(row);
  }
}

function showIncidents(o) {
  const { evictions, errors } = o;
  const signature = JSON.stringify([evictions[0]?.ts, evictions.length, errors[0]?.ts, errors.length]);
  if (signature === incidentsShown) return;
  incidentsShown = signature;
  fill(
    $("evictions"),
    evictions.map((e) => {
      const more = e.room_count - e.rooms.length;
      return [
        [clock(e.ts)],
        [e.reason],
        [e.name === e.user ? e.user : `${e.name} (${e.user})`],
        [`${e.conn} (${e.transport})`, "mono"],
        [e.rooms.join(", ") + (more > 0 ? ` +${more} more` : "")],
      ];
    }),
    5,
    "None since the process started.",
  );
  fill(
    $("errors"),
    errors.map((e) => [
      [clock(e.ts)],
      [e.level, `level-${e.level.toLowerCase()}`],
      [e.logger, "mono"],
      [e.message, "log-message"],
    ]),
    4,
    "None since the process started.",
  );
}

poll();
