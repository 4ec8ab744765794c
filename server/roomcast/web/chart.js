// chart.js: a line chart of (time, value) points in an SVG, with axes that read well:
// round y ticks (1, 2, 2.5 or 5 times a power of ten), time labels on x, a title with
// the unit. No dependencies; sized to the SVG's box on each draw, so a page redraws it
// when the box changes (LineChart.observe). Only SVG attributes are set: the pages'
// Content-Security-Policy allows no inline styles.

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { top: 22, right: 14, bottom: 24, left: 12 }; // px; left grows with the labels
const CHAR_PX = 7; // about one tick label character at the stylesheet's 11px
const TIME_STEPS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
  1800, 3600, 7200, 10800, 21600, 43200, 86400]; // seconds
const MIN_SPAN = 0.05; // seconds: the x axis covers at least this much (one point: a second)

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  parent?.append(node);
  return node;
}

/** Digits after the point that tick values `step` apart need. */
function decimalsOf(step) {
  let decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const whole = (d) => Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6;
  while (decimals < 10 && !whole(decimals)) decimals += 1;
  return decimals;
}

/** A round step near `span / count`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
  return nice * magnitude;
}

/** The y axis for `values`: `{low, high, ticks, decimals}`, low and high on ticks. */
export function valueScale(values, count = 4) {
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    const pad = Math.abs(low) / 10 || 1;
    low -= pad;
    high += pad;
  }
  const step = niceStep(high - low, count);
  const decimals = decimalsOf(step);
  const first = Math.floor(low / step + 1e-9);
  const last = Math.ceil(high / step - 1e-9);
  const ticks = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toFixed(decimals)));
  return { low: ticks[0], high: ticks[ticks.length - 1], ticks, decimals };
}

/** The x axis from `t0` to `t1` (unix seconds) over `width` px: ticks at round times,
 * their labels apart by at least a label's width. */
export function timeScale(t0, t1, width) {
  const fits = (s) => (t1 - t0) / s <= width / (formatTime(t1, s).length * CHAR_PX + 24);
  const step = TIME_STEPS.find(fits) ?? TIME_STEPS[TIME_STEPS.length - 1];
  const ticks = [];
  for (let i = Math.ceil(t0 / step - 1e-9); i * step <= t1 + 1e-9; i++) ticks.push(i * step);
  return { ticks, step };
}

const COMPACT = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

/** `value` for a tick label: grouped digits, or compact (12.5K) from ten thousand. */
export function formatTick(value, decimals) {
  value ||= 0; // not "-0"
  if (Math.abs(value) >= 10000) return COMPACT.format(value);
  const digits = { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
  return value.toLocaleString(undefined, digits);
}

const TIME_FORMATS = new Map(); // digits after the second (-1: no seconds) -> format

/** Unix time `t` as a label for ticks `step` seconds apart: 14:05, 14:05:30, 14:05:30.5. */
export function formatTime(t, step = 1) {
  const digits = step >= 60 ? -1 : step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
  if (!TIME_FORMATS.has(digits)) {
    const options = { hour: "2-digit", minute: "2-digit" };
    if (digits >= 0) options.second = "2-digit";
    if (digits > 0) options.fractionalSecondDigits = digits;
    TIME_FORMATS.set(digits, new Intl.DateTimeFormat([], options));
  }
  return TIME_FORMATS.get(digits).format(new Date(t * 1000));
}

/**
 * A line chart in `svg`. `draw(points, title)` with points `[{t, v}]` (oldest first,
 * t in unix seconds) redraws it at the SVG's current size; `observe(callback)` calls
 * `callback` when that size changes (the caller draws again).
 */
export class LineChart {
  constructor(svg) {
    this.svg = svg;
    svg.replaceChildren();
    this.grid = el("g", { class: "y-axis" }, svg);
    this.xAxis = el("g", { class: "x-axis" }, svg);
    this.title = el("text", { class: "axis-title", x: MARGIN.left, y: 14 }, svg);
    this.area = el("path", { class: "area" }, svg);
    this.line = el("polyline", { class: "line" }, svg);
    this.dot = el("circle", { class: "dot", r: 3.5 }, svg);
    this.empty = el("text", { class: "empty", "text-anchor": "middle" }, svg);
    this.size = { width: 0, height: 0 };
  }

  observe(callback) {
    if (typeof ResizeObserver === "undefined") return;
    new ResizeObserver(() => {
      const { width, height } = this.measure();
      if (width !== this.size.width || height !== this.size.height) callback();
    }).observe(this.svg);
  }

  measure() {
    const box = this.svg.getBoundingClientRect();
    return { width: Math.round(box.width), height: Math.round(box.height) };
  }

  draw(points, title, emptyText = "waiting for data") {
    const { width, height } = this.measure();
    this.size = { width, height };
    if (!width || !height) return; // not laid out (hidden): drawn again on resize
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.title.textContent = title;
    const visible = points.length > 0;
    this.empty.textContent = visible ? "" : emptyText;
    this.empty.setAttribute("x", String(width / 2));
    this.empty.setAttribute("y", String(height / 2));
    if (!visible) {
      this.grid.replaceChildren();
      this.xAxis.replaceChildren();
      this.line.setAttribute("points", "");
      this.area.setAttribute("d", "");
      this.dot.setAttribute("visibility", "hidden");
      return;
    }
    this.dot.removeAttribute("visibility");

    const plotHeight = height - MARGIN.top - MARGIN.bottom;
    const y = valueScale(points.map((p) => p.v), Math.max(2, Math.floor(plotHeight / 40)));
    const labels = y.ticks.map((v) => formatTick(v, y.decimals));
    const left = MARGIN.left + CHAR_PX * Math.max(...labels.map((l) => l.length)) + 6;
    const right = width - MARGIN.right;
    const bottom = height - MARGIN.bottom;
    const t1 = points[points.length - 1].t;
    const t0 = Math.min(points[0].t, t1 - (points.length > 1 ? MIN_SPAN : 1));
    const xOf = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
    const yOf = (v) => bottom - ((v - y.low) / (y.high - y.low)) * plotHeight;

    this.title.setAttribute("x", String(left));
    this.grid.replaceChildren();
    y.ticks.forEach((v, i) => {
      const at = yOf(v).toFixed(1);
      el("line", { class: i === 0 ? "axis" : "grid", x1: left, x2: right, y1: at, y2: at }, this.grid);
      const attrs = { class: "tick", x: left - 6, y: at, dy: "0.32em", "text-anchor": "end" };
      attrs["data-value"] = v;
      el("text", attrs, this.grid).textContent = labels[i];
    });

    this.xAxis.replaceChildren();
    const x = timeScale(t0, t1, right - left);
    for (const t of x.ticks) {
      const at = xOf(t).toFixed(1);
      el("line", { class: "tick-mark", x1: at, x2: at, y1: bottom, y2: bottom + 4 }, this.xAxis);
      const label = formatTime(t, x.step);
      const half = (label.length * CHAR_PX) / 2;
      if (xOf(t) - half < 0 || xOf(t) + half > width) continue; // it would be cut off
      const attrs = { class: "tick", x: at, y: bottom + 17, "text-anchor": "middle", "data-t": t };
      el("text", attrs, this.xAxis).textContent = label;
    }

    const coords = points.map((p) => [xOf(p.t).toFixed(1), yOf(p.v).toFixed(1)]);
    this.line.setAttribute("points", coords.map((c) => c.join(",")).join(" "));
    const [lastX, lastY] = coords[coords.length - 1];
    this.area.setAttribute(
      "d",
      `M${coords[0][0]},${bottom} L${coords.map((c) => c.join(",")).join(" L")} L${lastX},${bottom} Z`,
    );
    this.dot.setAttribute("cx", lastX);
    this.dot.setAttribute("cy", lastY);
  }
}
