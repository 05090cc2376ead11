// Times and durations in words, as the CLI prints them (core/text.py): the two largest units,
// cut rather than rounded, so "in 3m" never overstates a wait.

const UNITS = [
  [86400, "d", 3600, "h"],
  [3600, "h", 60, "m"],
  [60, "m", 1, "s"],
];

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms}ms`;
  if (ms < 10000) return `${Math.floor(ms / 1000)}.${Math.floor((ms % 1000) / 100)}s`;
  const whole = Math.floor(ms / 1000);
  for (const [unitSecs, unit, subSecs, sub] of UNITS) {
    if (whole >= unitSecs) {
      const count = Math.floor(whole / unitSecs);
      const part = Math.floor((whole % unitSecs) / subSecs);
      return part ? `${count}${unit} ${part}${sub}` : `${count}${unit}`;
    }
  }
  return `${whole}s`;
}

/** What a run or task used, as `petit show` prints it: "cpu 1.23s, peak 45 MiB"; "–" when
 * nothing was measured. */
export function usage(item) {
  const words = [];
  if (item.cpu_secs !== null && item.cpu_secs !== undefined) words.push(`cpu ${item.cpu_secs.toFixed(2)}s`);
  if (item.max_rss_bytes !== null && item.max_rss_bytes !== undefined) {
    const mib = item.max_rss_bytes / 2 ** 20;
    words.push(`peak ${mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(mib >= 10 ? 0 : 1)} MiB`}`);
  }
  return words.length ? words.join(", ") : "–";
}

/** "1 line", "2 lines" */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** "in 3m 10s", "2m ago", "now" (epoch milliseconds, both). */
export function relative(at, now) {
  if (at === null || at === undefined) return "";
  const delta = at - now;
  if (Math.abs(delta) < 1000) return "now";
  return delta > 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

/** Local wall-clock time of an epoch-ms instant, with the date unless it is today. */
export function clock(at, now = Date.now()) {
  if (at === null || at === undefined) return "";
  const when = new Date(at);
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return when.toDateString() === new Date(now).toDateString()
    ? time
    : `${when.toLocaleDateString()} ${time}`;
}

const TRIGGERS = { manual: "manual", schedule: "schedule", catchup: "catch-up" };

/** A run's trigger in words: "catch-up" is a fire that fell while petit was down. */
export function triggerLabel(trigger) {
  return TRIGGERS[trigger] || String(trigger);
}

export const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted", "skipped"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** How long a run or task has taken so far, or took. */
export function elapsed(item, now) {
  if (item.duration_ms !== null && item.duration_ms !== undefined) return item.duration_ms;
  return item.started_at ? now - item.started_at : null;
}
