// The job page's duration chart: one bar per run, oldest left, height = duration. Bars are
// focusable buttons so the keyboard can pick a run like the mouse does.
import { clear, round1, svgEl, widthOf } from "./svg.js";
import { duration } from "./format.js";

const HEIGHT = 140;
const AXIS_W = 56; // left gutter for the max-value label
const TOP = 12;
const BOTTOM = 8;
const PAD = 8;
const MAX_BAR_W = 28;
const GAP_RATIO = 0.25;
const MIN_BAR_H = 2; // a run still pending or of 0 ms stays clickable

/**
 * Draw runs (Run JSON, newest first) into svg (svg#durations). Clicking a bar, or Enter/Space on
 * a focused one, calls onSelect(run_id). selectedId, when given, marks that run's bar.
 */
export function drawDurations(svg, runs, onSelect, selectedId = null) {
  clear(svg);
  svg.classList.add("durations");
  const width = widthOf(svg, 600);
  const plotW = width - AXIS_W - PAD;
  const plotH = HEIGHT - TOP - BOTTOM;
  const ordered = runs.slice().reverse();
  const max = Math.max(0, ...ordered.map((r) => r.duration_ms ?? 0));
  const slot = ordered.length ? Math.min(MAX_BAR_W / (1 - GAP_RATIO), plotW / ordered.length) : 0;
  const barW = Math.max(1, slot * (1 - GAP_RATIO));
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("height", HEIGHT);

  const baseY = TOP + plotH;
  const axis = svgEl(
    "g",
    { class: "durations-axis" },
    svgEl("line", { class: "durations-grid", x1: AXIS_W, x2: width - PAD, y1: TOP, y2: TOP }),
    svgEl("line", { class: "durations-base", x1: AXIS_W, x2: width - PAD, y1: baseY, y2: baseY }),
    svgEl("text", { class: "durations-label", x: AXIS_W - 6, y: TOP, "text-anchor": "end",
      "dominant-baseline": "central" }, max > 0 ? duration(max) : "0"),
    svgEl("text", { class: "durations-label", x: AXIS_W - 6, y: baseY, "text-anchor": "end",
      "dominant-baseline": "central" }, "0"),
  );
  const bars = svgEl("g", { class: "durations-bars" });
  ordered.forEach((run, i) => {
    const h = max > 0 ? Math.max(MIN_BAR_H, ((run.duration_ms ?? 0) / max) * plotH) : MIN_BAR_H;
    const title = `${run.id} · ${run.status} · ${duration(run.duration_ms)}`;
    const bar = svgEl(
      "rect",
      { class: "bar", x: round1(AXIS_W + i * slot + (slot - barW) / 2), y: round1(baseY - h),
        width: round1(barW), height: round1(h), "data-run-id": run.id, "data-status": run.status,
        tabindex: 0, role: "button", "aria-label": title,
        "aria-pressed": selectedId == null ? null : String(run.id === selectedId) },
      svgEl("title", {}, title),
    );
    bars.append(bar);
  });
  // One delegated listener each: a redraw replaces the bars, not the svg.
  svg.onclick = (event) => {
    const bar = event.target.closest("rect.bar");
    if (bar && onSelect) onSelect(bar.getAttribute("data-run-id"));
  };
  svg.onkeydown = (event) => {
    const bar = event.target.closest?.("rect.bar");
    if (!bar || !onSelect || (event.key !== "Enter" && event.key !== " ")) return;
    event.preventDefault(); // Space would scroll the page
    onSelect(bar.getAttribute("data-run-id"));
  };
  svg.append(axis, bars);
}
