// The four pages: Customer, Wallboard, Reports, Operations. Each mount(main, argument,
// context) draws into <main> and returns a cleanup that stops its timers. Pages redraw
// only when an answer changed, and put keyboard focus back where it was, so live
// refreshing never steals the user's place.

import { api, ApiError } from "./api.js";
import {
  SERVICE_LEVEL_TARGET, barChart, clear, errorBox, fmtNumber, fmtPercent, fmtSeconds, fmtThreshold, fmtTime, h, setThresholds,
  table, thresholdOf, thresholdsText,
} from "./ui.js";

/** Redraws `container` with `build()` and puts focus back on the element with the same id. */
function redraw(container, ...children) {
  const focused = document.activeElement && container.contains(document.activeElement) ? document.activeElement.id : null;
  clear(container, ...children);
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus({ preventScroll: true });
  }
}

/** Runs `tick` now and then every `ms`, never two at once; returns the stop function. */
function every(ms, tick) {
  let stopped = false;
  let running = false;
  let timer = null;
  async function run() {
    if (stopped || running) return;
    running = true;
    try { await tick(); } finally { running = false; }
  }
  run();
  timer = setInterval(run, ms);
  return { stop() { stopped = true; clearInterval(timer); }, now: run };
}

/**
 * The server's answer-time thresholds (GET /v1/reports/service-levels), asked once per
 * page load; until it answers (or if it cannot) the contract's defaults stand.
 */
let thresholdsAsked = null;
function serverThresholds() {
  if (!thresholdsAsked) {
    thresholdsAsked = api("/v1/reports/service-levels")
      .then((answer) => { setThresholds(answer.thresholds); return true; })
      .catch(() => { thresholdsAsked = null; return false; });
  }
  return thresholdsAsked;
}

const qs = (params) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : "";
};

// ---------------------------------------------------------------- Customer

const HANDLE_KINDS = ["phone", "email", "whatsapp", "messenger", "visitor", "social"];

function customerSearch() {
  const kind = h("input", { id: "handle-kind", name: "kind", list: "handle-kinds", value: "phone", autocomplete: "off", size: 12 });
  const value = h("input", { id: "handle-value", name: "value", required: true, autocomplete: "off", placeholder: "+15551230001" });
  const message = h("div", { id: "search-message", "aria-live": "polite" });
  const form = h("form", { class: "bar", role: "search", "aria-label": "Find a customer", onsubmit: async (event) => {
    event.preventDefault();
    const k = kind.value.trim().toLowerCase();
    const v = value.value.trim();
    if (!v) return;
    if (k === "id" || k === "customer id") {
      location.hash = `#/customer/${encodeURIComponent(v)}`;
      return;
    }
    clear(message, "Looking up…");
    try {
      const answer = await api(`/v1/customers/resolve${qs({ kind: k, value: v })}`);
      clear(message);
      location.hash = `#/customer/${encodeURIComponent(answer.customer_id)}`;
    } catch (error) {
      clear(message, errorBox(error.status === 404 ? `No customer has the ${k} handle ${v}.` : error));
    }
  } },
  h("label", { for: "handle-kind" }, "Handle kind (or id)", kind),
  h("datalist", { id: "handle-kinds" }, [...HANDLE_KINDS, "id"].map((k) => h("option", { value: k }))),
  h("label", { for: "handle-value" }, "Handle or customer id", value),
  h("button", { type: "submit", id: "find-customer" }, "Find"));
  return h("div", {}, form, message);
}

function journeyBlock(journey, index) {
  const agentsOf = new Map(journey.interactions.map((i) => [i.interaction_id, i.agents]));
  return h("section", { class: "card", "data-journey": journey.journey_id, "aria-labelledby": `journey-${index}` },
    h("h3", { id: `journey-${index}` }, `Journey ${index + 1} · `,
      h("span", { class: `pill ${journey.status === "resolved" ? "ok" : "warn"}`, "data-field": "status" }, journey.status)),
    h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, "opened"), h("dd", {}, fmtTime(journey.opened_at))),
      h("div", {}, h("dt", {}, "resolved"), h("dd", {}, fmtTime(journey.resolved_at))),
      h("div", {}, h("dt", {}, "channels"), h("dd", { "data-field": "channels" }, journey.channels.join(" → ") || "–")),
      h("div", {}, h("dt", {}, "channel switches"), h("dd", { "data-field": "channel_switches" }, journey.channel_switches)),
      h("div", {}, h("dt", {}, "reopened"), h("dd", { "data-field": "reopened_count" }, journey.reopened_count)),
      h("div", {}, h("dt", {}, "topics"), h("dd", {}, journey.topics.join(", ") || "–"))),
    h("h4", {}, "Timeline"),
    h("ol", { class: "timeline", "aria-label": `Timeline of journey ${index + 1}` }, journey.timeline.map((line) => {
      const agents = agentsOf.get(line.interaction_id) || [];
      return h("li", { "data-interaction": line.interaction_id, "data-channel": line.channel, "data-type": line.type, "data-at": line.at },
        h("time", { datetime: line.at }, fmtTime(line.at)),
        h("span", { class: "pill" }, line.channel), " ",
        h("strong", {}, line.type), " ",
        h("span", { "data-field": "summary" }, line.summary),
        agents.length ? h("span", { class: "muted" }, ` · handled by ${agents.join(", ")}`) : null);
    })),
    table({
      caption: `Interactions of journey ${index + 1}`,
      columns: [
        { key: "interaction_id", label: "interaction" },
        { key: "channel", label: "channel" },
        { key: "started_at", label: "started", format: fmtTime },
        { key: "ended_at", label: "ended", format: fmtTime },
        { key: "status", label: "status" },
        { key: "queue", label: "queue" },
        { key: "agents", label: "agents", format: (v) => (v || []).join(", ") || "–" },
        { key: "messages", label: "messages", num: true },
        { key: "outcome", label: "outcome" },
      ],
      rows: journey.interactions,
      rowAttrs: (row) => ({ "data-interaction": row.interaction_id }),
    }));
}

function customerView(id, journey, identity) {
  const ctx = journey.context || {};
  const candidates = (identity && identity.merge_candidates) || [];
  const mergedFrom = (identity && identity.merged_from) || [];
  return [
    h("h1", {}, "Customer ", h("span", { "data-field": "customer_id" }, journey.customer_id)),
    h("div", { class: "split" },
      h("div", {},
        h("h2", {}, "Journeys"),
        journey.journeys.length ? journey.journeys.map(journeyBlock) : h("p", {}, "No journey yet.")),
      h("aside", { "aria-label": "Customer context" },
        h("section", { class: "card" },
          h("h2", {}, "Context for the next agent"),
          h("dl", { class: "figures" },
            h("div", {}, h("dt", {}, "last channel"), h("dd", { "data-field": "last_channel" }, ctx.last_channel || "–")),
            h("div", {}, h("dt", {}, "last agent"), h("dd", { "data-field": "last_agent" }, ctx.last_agent || "–")),
            h("div", {}, h("dt", {}, "last contact"), h("dd", {}, fmtTime(ctx.last_contact_at))),
            h("div", {}, h("dt", {}, "open journey"), h("dd", {}, ctx.open_journey_id ? "yes" : "none"))),
          h("h3", {}, "Topics"),
          h("p", {}, (ctx.topics || []).length ? ctx.topics.map((t) => h("span", { class: "pill" }, t)) : "–"),
          h("h3", {}, "Notes"),
          (ctx.notes || []).length
            ? h("ul", {}, ctx.notes.map((n) => h("li", {}, h("time", { datetime: n.at }, fmtTime(n.at)), ` ${n.agent}: `, n.text)))
            : h("p", {}, "No notes.")),
        h("section", { class: "card" },
          h("h2", {}, "Handles"),
          h("ul", {}, (journey.handles || []).map((hd) => h("li", { "data-handle": hd.kind }, `${hd.kind}: ${hd.value}`))),
          mergedFrom.length ? h("p", {}, "Merged from: ", mergedFrom.join(", ")) : null,
          h("h3", {}, "Merge candidates"),
          candidates.length
            ? h("ul", {}, candidates.map((c) => h("li", {}, h("a", { href: `#/customer/${encodeURIComponent(c)}` }, c))))
            : h("p", {}, "None.")))),
  ];
}

function mountCustomer(main, argument, context) {
  const search = customerSearch();
  const body = h("div", { id: "customer-body" });
  clear(main, argument ? null : h("h1", {}, "Find a customer"), search, body);
  if (!argument) {
    clear(body, h("p", {}, "Search by any handle (phone, email, WhatsApp id, …) or by customer id. The journey across every channel appears here and updates itself."));
    main.querySelector("#handle-value").focus();
    return null;
  }
  let last = "";
  const refresh = async () => {
    try {
      const [journey, identity] = await Promise.all([
        api(`/v1/customers/${encodeURIComponent(argument)}/journey`),
        api(`/v1/customers/${encodeURIComponent(argument)}`).catch(() => null),
      ]);
      const text = JSON.stringify([journey, identity]);
      if (text === last) return;
      last = text;
      redraw(body, customerView(argument, journey, identity));
      context.status(`customer updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      const text = `error:${error.message}`;
      if (text === last) return;
      last = text;
      redraw(body, h("h1", {}, `Customer ${argument}`),
        errorBox(error instanceof ApiError && error.status === 404 ? `No journey of customer ${argument} yet.` : error));
    }
  };
  // Polling twice a second bounds how stale the page can be (an email or a message adds
  // no queue change); a queue event refreshes at once. The page redraws only on change.
  const timer = every(500, refresh);
  const off = context.onQueue(() => timer.now());
  return () => { timer.stop(); off(); };
}

// ---------------------------------------------------------------- Wallboard

/**
 * A queue's card. `waits` (from a periodic /v1/queues, which lists the items) holds the
 * longest wait per channel and the channel of each queue's oldest item: each channel is
 * held to its own answer-time threshold, so an email waiting an hour is not a breach of
 * the voice threshold.
 */
function queueCard(entry, serviceLevel, waits, now) {
  const s = entry.stats;
  const since = Math.max(0, Math.floor((now - entry.receivedAt) / 1000));
  const longest = s.waiting > 0 ? s.longest_wait_seconds + since : 0;
  const waitingChannels = Object.entries(s.by_channel || {}).filter(([, n]) => n > 0);
  const oldestChannel = waits && waits.oldest && waits.oldest[s.oldest_interaction_id];
  const threshold = oldestChannel ? thresholdOf(oldestChannel)
    : waitingChannels.length ? Math.min(...waitingChannels.map(([c]) => thresholdOf(c))) : null;
  const age = waits ? Math.max(0, Math.floor((now - waits.at) / 1000)) : 0;
  const channelBreached = (c) => waits && waits.longest[c] !== undefined && waits.longest[c] + age > thresholdOf(c);
  const waitBreached = (threshold !== null && longest > threshold) || waitingChannels.some(([c]) => channelBreached(c));
  const slBreached = serviceLevel !== undefined && serviceLevel !== null && serviceLevel < SERVICE_LEVEL_TARGET;
  const breached = waitBreached || slBreached;
  const a = s.agents || {};
  return h("section", { class: `card${breached ? " breached" : ""}`, "data-queue": s.queue, "data-breached": breached ? "yes" : "no", "aria-labelledby": `queue-${s.queue}` },
    h("h2", { id: `queue-${s.queue}` }, s.queue, " ", breached ? h("span", { class: "pill bad" }, "threshold breached") : null),
    h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, "waiting"), h("dd", { "data-field": "waiting" }, s.waiting)),
      h("div", {}, h("dt", {}, "longest wait"), h("dd", { "data-field": "longest_wait", class: threshold !== null && longest > threshold ? "bad" : null }, fmtSeconds(longest),
        threshold !== null ? h("span", { class: "muted" }, ` / ${fmtThreshold(threshold)}${oldestChannel ? ` (${oldestChannel})` : ""}`) : null)),
      h("div", {}, h("dt", {}, "with agents"), h("dd", { "data-field": "assigned" }, s.assigned)),
      h("div", {}, h("dt", {}, "service level (24 h)"), h("dd", { "data-field": "service_level", class: slBreached ? "bad" : null }, fmtPercent(serviceLevel),
        h("span", { class: "muted" }, ` / ${Math.round(SERVICE_LEVEL_TARGET * 100)} %`)))),
    h("p", {}, "Waiting by channel: ", waitingChannels.length
      ? waitingChannels.map(([c, n]) => channelBreached(c)
        ? h("span", { class: "pill bad", "data-channel": c, "data-breached": "yes" }, `${c} ${n}, over ${fmtThreshold(thresholdOf(c))}`)
        : h("span", { class: "pill", "data-channel": c }, `${c} ${n}`))
      : "none waiting"),
    h("p", { class: "muted" }, `Agents: ${a.available ?? 0} available · ${a.busy ?? 0} busy · ${a.away ?? 0} away · ${a.offline ?? 0} offline`));
}

function loadText(agent) {
  const channels = new Set([...Object.keys(agent.capacity || {}), ...Object.keys(agent.load || {})]);
  return [...channels].sort().map((c) => `${c} ${(agent.load || {})[c] || 0}/${(agent.capacity || {})[c] ?? "–"}`).join(", ");
}

function loadRatio(agent) {
  let used = 0;
  let capacity = 0;
  for (const [c, n] of Object.entries(agent.capacity || {})) {
    capacity += n;
    used += (agent.load || {})[c] || 0;
  }
  return capacity ? used / capacity : 0;
}

function agentsSection(agents) {
  const states = { available: 0, busy: 0, away: 0, offline: 0 };
  for (const agent of agents) states[agent.state] = (states[agent.state] || 0) + 1;
  const shown = [...agents].sort((a, b) => loadRatio(b) - loadRatio(a) || a.agent_id.localeCompare(b.agent_id)).slice(0, 30);
  return [
    h("h2", {}, "Agents"),
    h("dl", { class: "figures", "aria-label": "Agents by state" }, Object.entries(states).map(([state, n]) =>
      h("div", { "data-state": state }, h("dt", {}, state), h("dd", { "data-field": "count" }, n)))),
    table({
      caption: shown.length < agents.length ? `Agents by load (the ${shown.length} busiest of ${agents.length})` : "Agents by load",
      columns: [
        { key: "agent_id", label: "agent" },
        { key: "state", label: "state" },
        { key: "load", label: "load / capacity", format: (_, agent) => loadText(agent) || "–" },
        { key: "ratio", label: "used", format: (_, agent) => h("span", {}, h("span", { class: "bar-meter", "aria-hidden": "true" },
          h("span", { style: `width:${Math.round(loadRatio(agent) * 100)}%` })), ` ${Math.round(loadRatio(agent) * 100)} %`) },
        { key: "assignments", label: "holding", num: true, format: (v) => (v || []).length },
      ],
      rows: shown,
      rowAttrs: (row) => ({ "data-agent": row.agent_id }),
    }),
  ];
}

function mountWallboard(main, _argument, context) {
  const summary = h("p", { id: "wallboard-summary", "aria-live": "off" });
  const cards = h("div", { class: "cards", id: "queues" });
  const agentsBox = h("div", { id: "agents" });
  const problem = h("div", {});
  clear(main, h("h1", {}, "Wallboard"), summary, problem, h("h2", {}, "Queues"), cards, agentsBox);
  let serviceLevels = {};
  let waits = {};
  let lastAgents = "";
  const draw = () => {
    const now = Date.now();
    const entries = [...context.queues.values()].sort((a, b) => a.stats.queue.localeCompare(b.stats.queue));
    const waiting = entries.reduce((sum, e) => sum + e.stats.waiting, 0);
    summary.textContent = `${entries.length} queues · ${waiting} waiting · service-level target ${Math.round(SERVICE_LEVEL_TARGET * 100)} %, answer-time thresholds per channel: ${thresholdsText()}`;
    redraw(cards, entries.length ? entries.map((e) => queueCard(e, serviceLevels[e.stats.queue], waits[e.stats.queue], now)) : h("p", {}, "No queue has had an item yet."));
  };
  // Seed from a plain query when the stream has not spoken yet, so the page is never
  // blank while it connects.
  if (context.queues.size === 0) {
    api("/v1/queues").then((answer) => {
      for (const q of answer.queues) {
        if (!context.queues.has(q.queue)) context.queues.set(q.queue, { stats: q, receivedAt: Date.now() });
      }
      draw();
    }).catch((error) => clear(problem, errorBox(error)));
  }
  // Agents' load changes with the queues: a queue event refreshes them too, at most
  // once a second; the timer covers changes no queue sees (an agent going away).
  let agentsAsked = 0;
  const off = context.onQueue(() => {
    draw();
    if (Date.now() - agentsAsked > 1000) agentsTimer.now();
  });
  const clock = setInterval(draw, 1000);
  const agentsTimer = every(2000, async () => {
    agentsAsked = Date.now();
    try {
      const answer = await api("/v1/agents");
      const text = JSON.stringify(answer.agents);
      if (text !== lastAgents) {
        lastAgents = text;
        redraw(agentsBox, agentsSection(answer.agents));
      }
    } catch (error) {
      redraw(agentsBox, h("h2", {}, "Agents"), errorBox(error));
    }
  });
  serverThresholds().then(draw);
  const levelTimer = every(5000, async () => {
    try {
      const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
      const [answer, queues] = await Promise.all([
        api(`/v1/reports/summary${qs({ group_by: "queue", from })}`),
        api("/v1/queues"),
      ]);
      serviceLevels = Object.fromEntries(answer.rows.map((row) => [row.key, row.service_level]));
      // Ages in this answer are as of its receipt; the cards count on from there.
      const at = Date.now();
      waits = Object.fromEntries(queues.queues.map((q) => {
        const longest = {};
        const oldest = {};
        for (const item of q.items) {
          if (!(longest[item.channel] >= item.wait_seconds)) longest[item.channel] = item.wait_seconds;
        }
        if (q.oldest_interaction_id) {
          const item = q.items.find((i) => i.interaction_id === q.oldest_interaction_id);
          if (item) oldest[item.interaction_id] = item.channel;
        }
        return [q.queue, { longest, oldest, at }];
      }));
      draw();
    } catch {
      // Service levels are an extra: the queues stay live without them.
    }
  });
  draw();
  return () => { off(); clearInterval(clock); agentsTimer.stop(); levelTimer.stop(); };
}

// ---------------------------------------------------------------- Reports

const SUMMARY_COLUMNS = [
  { key: "key", label: "group" },
  { key: "offered", label: "offered", num: true },
  { key: "answered", label: "answered", num: true },
  { key: "abandoned", label: "abandoned", num: true },
  { key: "abandonment_rate", label: "abandonment", num: true, format: fmtPercent },
  { key: "asa_seconds", label: "ASA", num: true, format: (v) => (v === null || v === undefined ? "–" : `${fmtNumber(v, 1)} s`) },
  { key: "service_level", label: "service level", num: true, format: fmtPercent },
  { key: "aht_seconds", label: "AHT", num: true, format: (v) => (v === null || v === undefined ? "–" : `${fmtNumber(v, 1)} s`) },
  { key: "handled", label: "handled", num: true },
  { key: "transfers", label: "transfers", num: true },
  { key: "csat_avg", label: "CSAT", num: true, format: (v) => fmtNumber(v, 2) },
  { key: "csat_responses", label: "CSAT answers", num: true },
  { key: "wait_p50", label: "wait p50", num: true, format: (v) => (v === null || v === undefined ? "–" : `${fmtNumber(v, 1)} s`) },
  { key: "wait_p90", label: "wait p90", num: true, format: (v) => (v === null || v === undefined ? "–" : `${fmtNumber(v, 1)} s`) },
];

const reportState = { from: "", to: "", group_by: "channel" };

/** A datetime-local value read as UTC (the log's clock), as RFC 3339. */
function utc(value) {
  return value ? `${value.length === 16 ? value + ":00" : value}Z` : "";
}

function mountReports(main) {
  const from = h("input", { id: "report-from", type: "datetime-local", value: reportState.from });
  const to = h("input", { id: "report-to", type: "datetime-local", value: reportState.to });
  const group = h("select", { id: "report-group" }, ["none", "channel", "queue", "hour", "day"].map((g) =>
    h("option", { value: g, selected: g === reportState.group_by }, g)));
  const results = h("div", { id: "report-results", "aria-live": "polite" });
  const form = h("form", { class: "bar", "aria-label": "Report range and grouping", onsubmit: (event) => {
    event.preventDefault();
    Object.assign(reportState, { from: from.value, to: to.value, group_by: group.value });
    load();
  } },
  h("label", { for: "report-from" }, "From (UTC, empty: the beginning)", from),
  h("label", { for: "report-to" }, "To (UTC, empty: now)", to),
  h("label", { for: "report-group" }, "Group by", group),
  h("button", { type: "submit", id: "run-report" }, "Show"));
  clear(main, h("h1", {}, "Reports"), form, results);
  async function load() {
    clear(results, h("p", {}, "Loading…"));
    await serverThresholds();
    const range = { from: utc(reportState.from), to: utc(reportState.to) };
    try {
      const [summary, journeys, topics] = await Promise.all([
        api(`/v1/reports/summary${qs({ ...range, group_by: reportState.group_by })}`),
        api(`/v1/reports/journeys${qs(range)}`),
        api(`/v1/reports/topics${qs(range)}`),
      ]);
      const suffix = `${reportState.group_by}${range.from ? "-from-" + range.from : ""}${range.to ? "-to-" + range.to : ""}`.replaceAll(":", "");
      const rows = summary.rows.map((row) => ({ ...row, key: row.key ?? "all" }));
      const figures = [
        ["journeys", journeys.journeys], ["resolved", journeys.resolved], ["multi_channel", journeys.multi_channel],
        ["channel_switch_rate", journeys.channel_switch_rate], ["fcr_rate", journeys.fcr_rate],
        ["repeat_contact_rate", journeys.repeat_contact_rate],
      ].map(([metric, value]) => ({ metric, value }));
      clear(results,
        h("section", { "aria-labelledby": "summary-heading" },
          h("h2", { id: "summary-heading" }, `Volume and service by ${reportState.group_by}`),
          h("p", { class: "muted", id: "service-level-thresholds" }, `Service level: answered within the channel's threshold (${thresholdsText()}).`),
          rows.length ? h("div", { class: "charts" },
            barChart("Offered", rows.map((r) => ({ label: r.key, value: r.offered })), (v) => fmtNumber(v)),
            barChart("Average speed of answer (s)", rows.map((r) => ({ label: r.key, value: r.asa_seconds }))),
            barChart("Service level (%)", rows.map((r) => ({ label: r.key, value: r.service_level === null ? null : r.service_level * 100 })))) : null,
          table({ caption: "Summary", columns: SUMMARY_COLUMNS, rows, csvName: `summary-${suffix}.csv`, id: "summary-table",
            rowAttrs: (row) => ({ "data-key": row.key }) })),
        h("section", { "aria-labelledby": "journeys-heading" },
          h("h2", { id: "journeys-heading" }, "Journeys"),
          table({ caption: "Journey figures", csvName: `journeys-${suffix}.csv`, id: "journeys-table",
            columns: [{ key: "metric", label: "figure" }, { key: "value", label: "value", num: true,
              format: (v, row) => (row.metric.endsWith("_rate") ? fmtPercent(v) : fmtNumber(v)) }],
            rows: figures, rowAttrs: (row) => ({ "data-key": row.metric }) }),
          (journeys.top_paths || []).length ? barChart("Top channel paths", journeys.top_paths.map((p) => ({ label: p.path, value: p.count })), (v) => fmtNumber(v)) : null,
          table({ caption: "Top channel paths", csvName: `paths-${suffix}.csv`, id: "paths-table",
            columns: [{ key: "path", label: "path" }, { key: "count", label: "journeys", num: true }],
            rows: journeys.top_paths || [] })),
        h("section", { "aria-labelledby": "topics-heading" },
          h("h2", { id: "topics-heading" }, "Topics"),
          (topics.rows || []).length ? barChart("Topics", topics.rows.map((t) => ({ label: t.topic, value: t.count })), (v) => fmtNumber(v)) : null,
          table({ caption: "Topics", csvName: `topics-${suffix}.csv`, id: "topics-table",
            columns: [{ key: "topic", label: "topic" }, { key: "count", label: "contacts", num: true }],
            rows: topics.rows || [], rowAttrs: (row) => ({ "data-key": row.topic }) })));
    } catch (error) {
      clear(results, errorBox(error));
    }
  }
  load();
  return null;
}

// ---------------------------------------------------------------- Operations

/** Partition numbers as ranges: [0, 1, 2, 5, 7, 8] → "0–2, 5, 7–8". */
function ranges(numbers) {
  const sorted = [...new Set(numbers || [])].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(", ") || "none";
}

/**
 * A projector group's claims (the `ownership` of GET /v1/views on a projector instance):
 * every live instance, its views, the interactions partitions its consumer group gave it,
 * and those it has caught up on and answers for.
 */
function ownershipSection(ownership) {
  const instances = [...(ownership.instances || [])].sort((a, b) => a.instance.localeCompare(b.instance));
  const claimed = new Map();
  for (const claim of instances) for (const p of claim.assigned || []) claimed.set(p, (claimed.get(p) || 0) + 1);
  const twice = [...claimed].filter(([, n]) => n > 1).map(([p]) => p);
  return h("section", { id: "ownership", "aria-labelledby": "ownership-heading" },
    h("h2", { id: "ownership-heading" }, `Projector group ${ownership.group}: claims of each instance`),
    h("p", {}, `${instances.length} instances claim ${claimed.size} interactions partitions (${ranges([...claimed.keys()])}). `,
      twice.length ? h("span", { class: "pill warn", "data-field": "claimed-twice" }, `claimed twice while they move: ${ranges(twice)}`) : null,
      ` This page comes from instance ${ownership.instance}; any instance answers any query.`),
    table({
      caption: "Claims of each instance", id: "claims-table", csvName: "claims.csv",
      columns: [
        { key: "instance", label: "instance", format: (v) => (v === ownership.instance ? [v, " ", h("span", { class: "pill ok" }, "this page")] : v) },
        { key: "url", label: "API", format: (v) => (v ? h("a", { href: `${v}/#/operations` }, v) : "–") },
        { key: "views", label: "views", format: (v) => (v || []).join(", ") || "–" },
        { key: "assigned", label: "partitions claimed", format: (v) => ranges(v) },
        { key: "ready", label: "answers for (caught up)", format: (v, row) => {
          const behind = (row.assigned || []).filter((p) => !(v || []).includes(p));
          return behind.length ? [ranges(v), " ", h("span", { class: "pill warn" }, `catching up on ${ranges(behind)}`)] : ranges(v);
        } },
      ],
      rows: instances,
      rowAttrs: (row) => ({ "data-instance": row.instance }),
    }));
}

function mountOperations(main, _argument, context) {
  const ready = h("p", { id: "readiness" });
  const body = h("div", { id: "views" });
  const outcome = h("div", { id: "rebuild-outcome", "aria-live": "polite" });
  clear(main, h("h1", {}, "Operations"), ready, outcome, body);
  let last = "";
  const admin = context.access.scopes.admin;
  async function rebuild(view) {
    clear(outcome, `Asking to rebuild ${view}…`);
    try {
      const answer = await api(`/v1/views/${encodeURIComponent(view)}/rebuild`, { method: "POST" });
      clear(outcome, h("p", { class: "pill ok" }, `Rebuilding ${answer.view} as version ${answer.version}; the live version serves until it catches up.`));
      timer.now();
    } catch (error) {
      clear(outcome, errorBox(error));
    }
  }
  const timer = every(2000, async () => {
    let readiness;
    try {
      await api("/readyz");
      readiness = { ok: true, text: "ready: every view has folded the log" };
    } catch (error) {
      readiness = { ok: false, text: error.status === 503 ? `not ready: ${error.detail}` : error.explain() };
    }
    ready.className = `pill ${readiness.ok ? "ok" : "warn"}`;
    ready.dataset.ready = readiness.ok ? "yes" : "no";
    ready.textContent = readiness.text;
    try {
      const answer = await api("/v1/views");
      const text = JSON.stringify(answer);
      if (text === last) return;
      last = text;
      const rows = answer.views.map((v) => ({ ...v, rebuilding: v.rebuilding ? `version ${v.rebuilding.version}: ${v.rebuilding.status}, ${fmtPercent(v.rebuilding.progress)}` : "" }));
      redraw(body,
        table({
          caption: "Views", id: "views-table",
          columns: [
            { key: "view", label: "view" },
            { key: "version", label: "version", num: true },
            { key: "status", label: "status", format: (v, row) => h("span", { class: `pill ${v === "running" ? "ok" : v === "failing" ? "bad" : "warn"}` }, v, row.error ? `: ${row.error}` : "") },
            { key: "events_applied", label: "events applied", num: true, format: (v) => fmtNumber(v) },
            { key: "lag", label: "lag", num: true },
            { key: "dead_letters", label: "dead letters", num: true, format: (v) => (v === undefined ? "–" : fmtNumber(v)) },
            { key: "progress", label: "progress", num: true, format: (v) => (v === undefined ? "–" : fmtPercent(v)) },
            { key: "rebuilding", label: "rebuilding", format: (v) => v || "–" },
            { key: "action", label: "action", format: (_, row) => admin
              ? h("button", { type: "button", id: `rebuild-${row.view}`, class: "secondary", onclick: () => rebuild(row.view) }, `Rebuild ${row.view}`)
              : h("span", { class: "muted" }, "admin only") },
          ],
          rows,
          rowAttrs: (row) => ({ "data-view": row.view }),
        }),
        answer.views.map((v) => h("details", { "data-view-partitions": v.view },
          h("summary", {}, `Partitions of ${v.view} (lag ${v.lag})`),
          table({
            caption: `Positions of ${v.view}`,
            columns: [
              { key: "topic", label: "topic" },
              { key: "partition", label: "partition", num: true },
              { key: "position", label: "position", num: true },
              { key: "end", label: "end", num: true },
              { key: "lag", label: "lag", num: true },
            ],
            rows: v.partitions || [],
          }))),
        answer.ownership ? ownershipSection(answer.ownership) : null);
    } catch (error) {
      last = "";
      redraw(body, errorBox(error));
    }
  });
  return () => timer.stop();
}

export const pages = {
  customer: { title: "Customer", mount: mountCustomer },
  wallboard: { title: "Wallboard", mount: mountWallboard },
  reports: { title: "Reports", mount: mountReports },
  operations: { title: "Operations", mount: mountOperations },
};
