// The dashboard: feed rooms over Server-Sent Events, drawn as numbers and a chart.
// A message's data is an object of numbers (or one number); every number gets a
// tile, and the chosen tile's series is charted against time. On open, each room's
// recent history is read over REST and drawn at once; the stream then resumes right
// after it (Last-Event-ID), so nothing is missed or drawn twice.
import { FeedStream, describeState } from "../roomcast.js"; // relative: works under any prefix
import { LineChart } from "./chart.js";

const $ = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
const POINTS = 120; // per series: what the chart shows, and the history read on open
const ROOT = new URL("../", import.meta.url); // the server (or its prefix), as roomcast.js's

// A field's unit: declared by the feed (`data.units = {field: "unit"}`), else read
// from its name: a suffix (`p99_ms`, `uptime_s`, `disk_pct`), or a few common names.
const UNIT_SUFFIXES = [
  [/(^|_)ms$/, "ms"],
  [/(^|_)us$/, "µs"],
  [/(^|_)(s|sec|secs|seconds)$/, "s"],
  [/(^|_)(pct|percent)$/, "%"],
  [/(^|_)bytes$/, "bytes"],
];
const UNIT_NAMES = new Map([["cpu", "%"], ["rps", "req/s"], ["qps", "queries/s"]]);

const feeds = new Map(); // room -> card state
let stream = null;
let frame = 0;
let generation = 0; // the current watch(): an older one's history is dropped

function numbersOf(data, prefix = "") {
  if (typeof data === "number" && Number.isFinite(data)) return [[prefix || "value", data]];
  if (!data || typeof data !== "object" || Array.isArray(data)) return [];
  const found = [];
  for (const [key, value] of Object.entries(data)) {
    if (typeof value === "number" && Number.isFinite(value)) found.push([prefix + key, value]);
    else if (!prefix && value && typeof value === "object") found.push(...numbersOf(value, `${key}.`));
  }
  return found;
}

function unitOf(feed, field) {
  if (feed.units.has(field)) return feed.units.get(field);
  const name = field.slice(field.lastIndexOf(".") + 1).toLowerCase();
  if (UNIT_NAMES.has(name)) return UNIT_NAMES.get(name);
  return UNIT_SUFFIXES.find(([pattern]) => pattern.test(name))?.[1] ?? "";
}

function format(value) {
  if (Number.isInteger(value)) return value.toLocaleString();
  return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function withUnit(text, unit) {
  return unit ? `${text} ${unit}` : text;
}

function card(room) {
  const section = document.createElement("section");
  section.className = "feed";
  section.dataset.testid = "feed";
  section.dataset.room = room;
  const header = document.createElement("header");
  const title = document.createElement("h2");
  title.textContent = room;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = "loading its history…";
  header.append(title, meta);
  const tiles = document.createElement("div");
  tiles.className = "tiles";
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.dataset.testid = "chart";
  svg.dataset.points = "0";
  const caption = document.createElement("p");
  caption.className = "meta";
  section.append(header, tiles, svg, caption);
  $("feeds").append(section);
  const chart = new LineChart(svg);
  chart.observe(schedule); // the full width at any size: drawn again when it changes
  return {
    section, meta, tiles, svg, caption, chart,
    series: new Map(), // field -> [{t, v}], oldest first
    units: new Map(), // field -> unit the feed declared
    tileOf: new Map(), // field -> tile button
    chosen: null,
    epoch: null, offset: 0, count: 0, gaps: 0, ts: 0, history: 0,
  };
}

function tile(feed, field) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.testid = "metric";
  button.dataset.field = field;
  button.setAttribute("aria-pressed", "false");
  const name = document.createElement("span");
  name.className = "field";
  name.textContent = field;
  const reading = document.createElement("span");
  reading.className = "reading";
  const value = document.createElement("span");
  value.className = "value";
  const unit = document.createElement("span");
  unit.className = "unit";
  reading.append(value, unit);
  button.append(name, reading);
  button.addEventListener("click", () => choose(feed, field));
  feed.tiles.append(button);
  feed.tileOf.set(field, button);
  if (feed.chosen === null) choose(feed, field);
  return button;
}

function choose(feed, field) {
  feed.chosen = field;
  for (const [name, button] of feed.tileOf) button.setAttribute("aria-pressed", String(name === field));
  schedule();
}

/** One event of `feed` (from its history or live): its numbers join the series. */
function add(feed, event) {
  if (feed.epoch === event.epoch && event.offset !== feed.offset + 1) feed.gaps += 1;
  feed.epoch = event.epoch;
  feed.offset = event.offset;
  feed.count += 1;
  feed.ts = event.ts;
  const units = event.data?.units;
  if (units && typeof units === "object") {
    for (const [field, unit] of Object.entries(units)) {
      if (typeof unit === "string") feed.units.set(field, unit);
    }
  }
  for (const [field, value] of numbersOf(event.data)) {
    if (!feed.series.has(field)) {
      feed.series.set(field, []);
      tile(feed, field);
    }
    const points = feed.series.get(field);
    points.push({ t: event.ts, v: value });
    if (points.length > POINTS) points.shift();
  }
}

function onMessage(event) {
  const feed = feeds.get(event.room);
  if (!feed) return;
  add(feed, event);
  schedule();
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function drawFeed(feed) {
  const { section, meta } = feed;
  section.dataset.offset = String(feed.offset);
  section.dataset.count = String(feed.count);
  section.dataset.gaps = String(feed.gaps);
  section.dataset.history = String(feed.history);
  if (feed.count) {
    const when = new Date(feed.ts * 1000).toLocaleTimeString();
    meta.textContent = `offset ${feed.offset} · ${feed.count} events · last at ${when}`;
  } else if (feed.epoch !== null) {
    meta.textContent = "no events yet";
  }
  for (const [field, button] of feed.tileOf) {
    const points = feed.series.get(field);
    button.querySelector(".value").textContent = format(points[points.length - 1].v);
    button.querySelector(".unit").textContent = unitOf(feed, field);
  }
  const points = feed.series.get(feed.chosen) || [];
  const unit = feed.chosen === null ? "" : unitOf(feed, feed.chosen);
  const title = feed.chosen === null ? "" : unit ? `${feed.chosen} (${unit})` : feed.chosen;
  feed.chart.draw(points, title, feed.epoch === null ? "loading…" : "waiting for the first event");
  feed.svg.dataset.points = String(points.length);
  if (points.length === 0) return;
  const values = points.map((p) => p.v);
  const low = withUnit(format(Math.min(...values)), unit);
  const high = withUnit(format(Math.max(...values)), unit);
  feed.svg.setAttribute("aria-label", `${feed.chosen} over the last ${points.length} events`);
  feed.caption.textContent = `${feed.chosen}: low ${low} · high ${high} · last ${points.length} events`;
}

function draw() {
  frame = 0;
  for (const feed of feeds.values()) drawFeed(feed);
  // The hint for an empty dashboard goes once numbers flow.
  $("hint").hidden = [...feeds.values()].some((feed) => feed.count > 0);
}

function setStatus(detail) {
  const status = $("status");
  status.dataset.state = detail.state;
  status.textContent = describeState(detail);
}

/** The room's latest events (up to POINTS) and its position, over REST. */
async function history(room) {
  const url = new URL(`rooms/${encodeURIComponent(room)}/messages`, ROOT);
  url.searchParams.set("limit", String(POINTS));
  const reply = await fetch(url, { headers: { Accept: "application/json" } });
  if (!reply.ok) throw new Error(`${reply.status} ${reply.statusText}`);
  return reply.json();
}

/** Draw each room's history; the Last-Event-ID to resume the stream from its end
 * (null: start live, as for a room whose history could not be read). */
async function loadHistories(rooms) {
  const pages = await Promise.allSettled(rooms.map(history));
  const positions = [];
  pages.forEach((page, i) => {
    const feed = feeds.get(rooms[i]);
    if (page.status === "rejected") {
      console.warn(`roomcast dashboard: no history for ${rooms[i]}:`, page.reason);
      return;
    }
    const { epoch, offset, events } = page.value;
    for (const event of events) add(feed, event);
    feed.epoch = epoch;
    feed.offset = offset;
    feed.history = events.length;
    positions.push([rooms[i], `${epoch}:${offset}`]);
  });
  if (positions.length === 0) return null;
  if (rooms.length === 1) return positions[0][1];
  return positions.map(([room, position]) => `${room}=${position}`).join(";");
}

async function watch(rooms, name) {
  const mine = ++generation;
  stream?.close();
  stream = null;
  feeds.clear();
  $("feeds").replaceChildren();
  $("hint").hidden = false;
  // The sample feed's command, aimed at this server and these rooms.
  const command = ["roomcast demo-feed --url", ROOT.href.replace(/\/$/, "")];
  if (rooms.length !== 1 || rooms[0] !== "feed:demo") command.push(...rooms.map((room) => `--room ${room}`));
  $("hint-command").textContent = command.join(" ");
  for (const room of rooms) feeds.set(room, card(room));
  setStatus({ state: "connecting" });
  const lastEventId = await loadHistories(rooms);
  if (mine !== generation) return; // another watch() began meanwhile
  schedule();
  stream = new FeedStream(rooms, { name: name || null, lastEventId });
  stream.on("state", setStatus);
  stream.on("message", onMessage);
  stream.on("subscribed", (result) => {
    const feed = feeds.get(result.room);
    if (feed && !result.recovered) {
      feed.epoch = result.epoch; // a new start: what follows is not a gap
      feed.offset = result.offset;
      schedule();
    }
  });
  window.roomcastFeed = stream; // for the console and for tests
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const rooms = $("room-input").value.split(",").map((r) => r.trim()).filter(Boolean);
  if (rooms.length) watch([...new Set(rooms)], $("name-input").value.trim());
});

// Watch at once: the rooms and name of the address (?rooms=a,b&name=x), or the form's.
const params = new URLSearchParams(location.search);
if (params.get("rooms")) $("room-input").value = params.get("rooms");
if (params.has("name")) $("name-input").value = params.get("name");
$("join-form").requestSubmit();
