// The run page's timeline: one row per task, one bar per attempt, so a retried task shows each
// try (and the delay between them) on its row. Times are epoch milliseconds; the axis counts
// from the run's first start.
import { clear, ellipsize, round1, svgEl, widthOf } from "./svg.js";
import { duration } from "./format.js";

const ROW_H = 24;
const BAR_H = 14;
const AXIS_H = 26;
const CHAR_W = 7.25; // widgets.css's 12px monospace label font
const MAX_LABEL_CHARS = 28;
const PAD = 12;
const MIN_BAR_W = 2; // an attempt of a few milliseconds stays visible
const TICK_TARGET_PX = 90;
const TICK_STEPS_MS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
  3600e3, 7200e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 24 * 3600e3,
];

/**
 * The attempts of one TaskState: its attempt_history when present (the one in flight has
 * ended_at null), else one attempt from started_at/ended_at; none when it never started.
 * Each is {attempt, start, end, status}: a running attempt ends at now, an earlier one failed
 * (that is why it was retried), the last finished one has the task's status.
 */
export function taskAttempts(task, now) {
  const history = Array.isArray(task.attempt_history) ? task.attempt_history : null;
  const raw = history
    ? history.filter((a) => a.started_at != null)
    : task.started_at != null
      ? [{ attempt: task.attempts || 1, started_at: task.started_at, ended_at: task.ended_at }]
      : [];
  return raw.map((a, i) => {
    const last = i === raw.length - 1;
    const running = a.ended_at == null;
    const status = running ? "running" : last && task.status !== "running" ? task.status : "failed";
    return { attempt: a.attempt ?? i + 1, start: a.started_at, end: running ? now : a.ended_at, status };
  });
}

/** Draw tasks (TaskState JSON list) into svg (svg#gantt) as of now (epoch ms). */
export function drawGantt(svg, tasks, now = Date.now()) {
  clear(svg);
  svg.classList.add("gantt");
  const rows = tasks.map((task) => ({ task, attempts: taskAttempts(task, now) }));
  const spans = rows.flatMap((r) => r.attempts);
  const t0 = spans.length ? Math.min(...spans.map((a) => a.start)) : now;
  const t1 = spans.length ? Math.max(t0 + 1, ...spans.map((a) => a.end)) : now + 1;
  const width = Math.max(widthOf(svg), 320);
  // Ids take at most a third of a narrow (phone) chart, so the bars keep most of it.
  const fitChars = Math.floor(width / 3 / CHAR_W);
  const longest = Math.max(4, ...tasks.map((t) => String(t.task_id).length));
  const labelChars = Math.min(MAX_LABEL_CHARS, fitChars, longest);
  const plotX = PAD + Math.ceil(labelChars * CHAR_W) + PAD;
  const plotW = width - plotX - 3 * PAD; // room for the last tick label
  const height = AXIS_H + rows.length * ROW_H + 4;
  const xOf = (t) => plotX + ((t - t0) / (t1 - t0)) * plotW;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", height);

  const axis = drawAxis(t1 - t0, plotX, plotW, height);
  const body = svgEl("g", { class: "gantt-rows" });
  rows.forEach(({ task, attempts }, i) => {
    const y = AXIS_H + i * ROW_H;
    const id = String(task.task_id);
    const row = svgEl(
      "g",
      { class: "gantt-row", "data-task-id": id, "data-status": task.status },
      svgEl("rect", { class: "gantt-band", x: 0, y, width, height: ROW_H }),
      svgEl("text", { class: "gantt-label", x: PAD, y: y + ROW_H / 2, "dominant-baseline": "central" },
        svgEl("title", {}, `${id} · ${task.status}`), ellipsize(id, labelChars)),
    );
    if (!attempts.length) {
      // A task that never started (pending, skipped) says so where its bar would be.
      row.append(svgEl("text", { class: "gantt-idle", x: plotX + 4, y: y + ROW_H / 2,
        "dominant-baseline": "central" }, task.status));
    }
    for (const a of attempts) {
      const x = xOf(a.start);
      const title = `${id} #${a.attempt} · ${a.status} · ${duration(a.end - a.start)}`;
      row.append(
        svgEl(
          "rect",
          { class: "attempt", x: round1(x), y: y + (ROW_H - BAR_H) / 2, height: BAR_H, rx: 3,
            width: round1(Math.max(MIN_BAR_W, xOf(a.end) - x)), "data-task-id": id,
            "data-attempt": a.attempt, "data-status": a.status },
          svgEl("title", {}, title),
        ),
      );
    }
    body.append(row);
  });
  svg.append(axis, body);
  if (spans.some((a) => a.status === "running")) {
    svg.append(svgEl("line", { class: "gantt-now", x1: round1(xOf(now)), x2: round1(xOf(now)),
      y1: AXIS_H - 4, y2: height }));
  }
}

// Ticks at a round step (1 s, 5 s, 1 min, ...) about TICK_TARGET_PX apart, labelled as offsets
// from the first start: "0", "30 s", "1m 00s".
function drawAxis(spanMs, plotX, plotW, height) {
  const wanted = Math.max(2, Math.floor(plotW / TICK_TARGET_PX));
  const step = TICK_STEPS_MS.find((s) => spanMs / s <= wanted) ?? TICK_STEPS_MS.at(-1);
  const axis = svgEl("g", { class: "gantt-axis" });
  for (let t = 0; t <= spanMs; t += step) {
    const x = round1(plotX + (t / spanMs) * plotW);
    axis.append(
      svgEl("line", { class: "gantt-tick", x1: x, x2: x, y1: AXIS_H - 4, y2: height }),
      svgEl("text", { class: "gantt-tick-label", x, y: AXIS_H - 10, "text-anchor": "middle" },
        t === 0 ? "0" : duration(t)),
    );
  }
  return axis;
}
