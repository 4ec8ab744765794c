// The dashboard: feed rooms over Server-Sent Events, drawn as numbers and a chart.
// A message's data is an object of numbers (or one number); every number gets a
// tile, and the chosen tile's series is charted.
import { FeedStream, describeState } from "../roomcast.js"; // relative: works under any prefix

const $ = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);
const SVG = "http://www.w3.org/2000/svg";
const POINTS = 120;
const WIDTH = 600;
const HEIGHT = 200;

const feeds = new Map(); // room -> card state
let stream = null;
let frame = 0;

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

function format(value) {
  if (Number.isInteger(value)) return value.toLocaleString();
  return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
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
  meta.textContent = "waiting for the first event…";
  header.append(title, meta);
  const tiles = document.createElement("div");
  tiles.className = "tiles";
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.dataset.testid = "chart";
  for (const y of [0.25, 0.5, 0.75]) {
    const grid = document.createElementNS(SVG, "line");
    grid.setAttribute("class", "grid");
    grid.setAttribute("x1", "0");
    grid.setAttribute("x2", String(WIDTH));
    grid.setAttribute("y1", String(HEIGHT * y));
    grid.setAttribute("y2", String(HEIGHT * y));
    svg.append(grid);
  }
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("class", "line");
  svg.append(line);
  const caption = document.createElement("p");
  caption.className = "meta";
  section.append(header, tiles, svg, caption);
  $("feeds").append(section);
  return {
    section, meta, tiles, line, svg, caption,
    series: new Map(), // field -> values
    tileOf: new Map(), // field -> tile button
    chosen: null,
    epoch: null, offset: 0, count: 0, gaps: 0, ts: 0,
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
  const value = document.createElement("span");
  value.className = "value";
  button.append(name, value);
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

function onMessage(event) {
  const feed = feeds.get(event.room);
  if (!feed) return;
  if (feed.epoch === event.epoch && event.offset !== feed.offset + 1) feed.gaps += 1;
  feed.epoch = event.epoch;
  feed.offset = event.offset;
  feed.count += 1;
  feed.ts = event.ts;
  for (const [field, value] of numbersOf(event.data)) {
    if (!feed.series.has(field)) {
      feed.series.set(field, []);
      tile(feed, field);
    }
    const values = feed.series.get(field);
    values.push(value);
    if (values.length > POINTS) values.shift();
  }
  schedule();
}

function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  for (const feed of feeds.values()) {
    const { section, meta } = feed;
    section.dataset.offset = String(feed.offset);
    section.dataset.count = String(feed.count);
    section.dataset.gaps = String(feed.gaps);
    if (feed.count) {
      const when = new Date(feed.ts * 1000).toLocaleTimeString();
      meta.textContent = `offset ${feed.offset} · ${feed.count} events · last at ${when}`;
    }
    for (const [field, button] of feed.tileOf) {
      const values = feed.series.get(field);
      button.querySelector(".value").textContent = format(values[values.length - 1]);
    }
    const values = feed.series.get(feed.chosen) || [];
    if (values.length === 0) continue;
    const low = Math.min(...values);
    const high = Math.max(...values);
    const span = high - low || 1;
    const step = WIDTH / (POINTS - 1);
    const start = POINTS - values.length;
    const points = values.map((v, i) => {
      const x = (start + i) * step;
      const y = HEIGHT - 8 - ((v - low) / span) * (HEIGHT - 16);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    feed.line.setAttribute("points", points.join(" "));
    feed.svg.dataset.points = String(values.length);
    feed.svg.setAttribute("aria-label", `${feed.chosen} over the last ${values.length} events`);
    feed.caption.textContent =
      `${feed.chosen}: low ${format(low)} · high ${format(high)} · last ${values.length} events`;
  }
}

function setStatus(detail) {
  const status = $("status");
  status.dataset.state = detail.state;
  status.textContent = describeState(detail);
}

function watch(rooms, name) {
  stream?.close();
  feeds.clear();
  $("feeds").replaceChildren();
  for (const room of rooms) feeds.set(room, card(room));
  stream = new FeedStream(rooms, { name: name || null });
  stream.on("state", setStatus);
  stream.on("message", onMessage);
  stream.on("subscribed", (result) => {
    const feed = feeds.get(result.room);
    if (feed && !result.recovered) {
      feed.epoch = result.epoch; // a new start: what follows is not a gap
      feed.offset = result.offset;
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
