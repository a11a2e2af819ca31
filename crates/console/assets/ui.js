// Small DOM helpers shared by the pages: element building (text is always set as text,
// never parsed as HTML, so nothing from the log can inject markup), number and time
// formats, tables that download as CSV, and SVG bar charts drawn by hand.

const SVG = "http://www.w3.org/2000/svg";

/** h("td", {class: "num"}, "12") → <td class="num">12</td>. */
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function fmtNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  return `${(ratio * 100).toFixed(1)} %`;
}

export function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(Number(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A threshold in seconds, in its round unit: 20 s, 5 min, 1 h. */
export function fmtThreshold(seconds) {
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** An RFC 3339 time shown in UTC, the log's clock. */
export function fmtTime(text) {
  if (!text) return "–";
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

export function errorBox(error) {
  const text = error && error.explain ? error.explain() : String(error && error.message ? error.message : error);
  return h("div", { class: "error", role: "alert" }, text);
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** CSV text of rows given as arrays. */
export function toCsv(header, rows) {
  return [header, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

/** A button that saves `csv()` as a file (built on click, from the data shown). */
export function csvButton(label, filename, csv) {
  return h("button", {
    type: "button",
    class: "secondary",
    "data-csv": filename,
    onclick: () => {
      const blob = new Blob([csv()], { type: "text/csv;charset=utf-8" });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: filename });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    },
  }, label);
}

/**
 * A table: columns [{key, label, num, format}], rows of objects. The raw values go to the
 * CSV; the formatted ones to the screen. Wrapped in a keyboard-focusable scroll region so
 * a wide table stays usable on a phone.
 */
export function table({ caption, columns, rows, csvName, id, rowAttrs }) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) =>
    h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => {
      const value = row[c.key];
      const shown = c.format ? c.format(value, row) : value;
      // The raw value rides along, so a test (or a person's devtools) can compare what is
      // shown with what the API answered.
      const raw = value === null || value === undefined || typeof value === "object" ? null : String(value);
      return h("td", { class: c.num ? "num" : null, "data-field": c.key, "data-value": raw }, shown === undefined || shown === null ? "–" : shown);
    })));
  const element = h("table", { id }, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body));
  const wrapper = h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": `${caption} (table)` }, element);
  if (!csvName) return wrapper;
  const csv = () => toCsv(columns.map((c) => c.key), rows.map((row) => columns.map((c) => {
    const value = row[c.key];
    return Array.isArray(value) ? value.join(" ") : value;
  })));
  return h("div", {}, h("div", { class: "row-actions" }, csvButton(`Download ${caption} (CSV)`, csvName, csv)), wrapper);
}

function svg(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) element.setAttribute(key, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

/**
 * A horizontal bar chart of [{label, value}] as SVG, with a title for screen readers.
 * Drawn by hand: a few rectangles need no charting library.
 */
export function barChart(title, bars, format = (v) => fmtNumber(v, 1)) {
  const shown = bars.filter((b) => b.value !== null && b.value !== undefined).slice(0, 24);
  const width = 440;
  const row = 22;
  const labelWidth = 130;
  const height = Math.max(1, shown.length) * row + 8;
  const max = Math.max(...shown.map((b) => Number(b.value)), 0) || 1;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", width, height });
  chart.append(svg("title", {}, `${title}: ${shown.map((b) => `${b.label} ${format(b.value)}`).join(", ") || "no data"}`));
  shown.forEach((bar, index) => {
    const y = index * row + 4;
    const barWidth = Math.max(1, ((width - labelWidth - 80) * Number(bar.value)) / max);
    const label = String(bar.label).length > 22 ? String(bar.label).slice(0, 21) + "…" : String(bar.label);
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", "font-size": 12, fill: "#1b1f24" }, label),
      svg("rect", { x: labelWidth, y: y + 2, width: barWidth, height: row - 6, fill: "#1f4e79", rx: 2 }),
      svg("text", { x: labelWidth + barWidth + 6, y: y + 14, "font-size": 12, fill: "#1b1f24" }, format(bar.value)),
    );
  });
  if (!shown.length) return h("figure", { class: "chart-figure" }, h("figcaption", {}, title), h("p", { class: "muted" }, "No data in this range."));
  return h("figure", { class: "chart-figure" }, h("figcaption", {}, title), chart);
}

/**
 * Answer-time thresholds per channel (seconds): the contract's defaults (voice 20 s, chat
 * and messaging 1 min, sms and social 5 min, others 1 h) until the server says its own
 * (GET /v1/reports/service-levels, see setThresholds).
 */
const THRESHOLDS = { voice: 20, chat: 60, messaging: 60, sms: 300, social: 300 };
const OTHERS = { seconds: 3600 };
export const thresholdOf = (channel) => THRESHOLDS[channel] ?? OTHERS.seconds;

/** Channels grouped by threshold: [[seconds, [channel…]]…], shortest first. */
function byThreshold() {
  const groups = new Map();
  for (const [channel, seconds] of Object.entries(THRESHOLDS)) {
    if (!groups.has(seconds)) groups.set(seconds, []);
    groups.get(seconds).push(channel);
  }
  return [...groups].sort(([a], [b]) => a - b);
}

/**
 * Takes the server's thresholds ({channel: seconds}, every channel named). The one most
 * channels share is kept as the threshold of "others" (a channel this console does not
 * know yet), and those channels are no longer listed one by one.
 */
export function setThresholds(thresholds) {
  const given = Object.entries(thresholds || {}).filter(([, s]) => Number.isFinite(s) && s > 0);
  if (!given.length) return;
  for (const key of Object.keys(THRESHOLDS)) delete THRESHOLDS[key];
  for (const [channel, seconds] of given) THRESHOLDS[channel] = seconds;
  const [common, channels] = byThreshold().reduce((best, group) => (group[1].length > best[1].length ? group : best));
  OTHERS.seconds = common;
  for (const channel of channels) delete THRESHOLDS[channel];
}

/** The thresholds in words: "voice 20 s · chat, messaging 1 min · sms, social 5 min · others 1 h". */
export function thresholdsText() {
  const named = byThreshold().map(([seconds, channels]) => `${channels.sort().join(", ")} ${fmtThreshold(seconds)}`);
  return [...named, `others ${fmtThreshold(OTHERS.seconds)}`].join(" · ");
}

/** A service-level target: below it a queue counts as breached. */
export const SERVICE_LEVEL_TARGET = 0.8;
