// A job: its DAG coloured by one run's task states, its settings, its run history (paged, newest
// first) and a chart of recent durations. Live: the job's run and task events.

import { can, get, post, query } from "./api.js";
import { button, fill, h, path } from "./dom.js";
import { clock, duration, elapsed, plural, relative, triggerLabel } from "./format.js";
import { drawDurations } from "./chart.js";
import { LIST_THRESHOLD, layoutDag } from "./dag.js";
import { colourDag, drawDag } from "./dagdraw.js";
import { svgEl } from "./svg.js";

export const NAME = "job";
const PAGE = 20;
const CHART_RUNS = 50;

export async function mount(main, [jobId], search, page) {
  const view = new JobView(main, jobId, search.get("run"), page);
  // the stream first: the events that come while the page loads are applied once it has
  page.stream(`/api/events${query({ job_id: jobId, event: ["run", "task"] })}`, (name, data) => view.loaded && view.onEvent(name, data), {
    settle: () => view.refresh(),
  });
  await page.reread(() => view.load());
}

class JobView {
  constructor(main, jobId, runId, page) {
    this.main = main;
    this.jobId = jobId;
    this.pinned = runId; // a run chosen by the user (or the URL); null follows the newest
    this.page = page;
    this.cursors = [null]; // the `before` of each page shown so far; the last is this page's
    this.states = new Map(); // task id -> status, for the selected run
  }

  get selected() {
    return this.pinned || this.chartRuns?.[0]?.id || null;
  }

  async load() {
    const base = path("api", "jobs", this.jobId);
    const [job, chart] = await Promise.all([
      get(base, this.page.signal),
      get(`${base}/runs${query({ limit: CHART_RUNS })}`, this.page.signal),
    ]);
    if (!this.page.active) return;
    this.job = job;
    this.chartRuns = chart.runs;
    this.render();
    await Promise.all([this.loadRuns(), this.loadStates()]);
    this.loaded = true;
    this.page.ready();
  }

  /** Re-read the runs and the graph's states (the job's definition changes only on a reload). */
  async refresh() {
    const reply = await get(`${path("api", "jobs", this.jobId)}/runs${query({ limit: CHART_RUNS })}`, this.page.signal);
    if (!this.page.active) return;
    const same = JSON.stringify(reply.runs) === JSON.stringify(this.chartRuns);
    this.chartRuns = reply.runs;
    if (!same) this.drawChart();
    await Promise.all([this.loadRuns(), this.loadStates()]);
  }

  render() {
    const job = this.job;
    document.title = `${job.name || job.id} · petit`;
    this.graph = h("div", { class: "graph scroll", "aria-label": "Task graph" });
    this.selection = h("p", { class: "muted", id: "dag-run" });
    this.runsBody = h("tbody");
    this.older = button("Older", () => this.page_(+1), { id: "older" });
    this.newer = button("Newer", () => this.page_(-1), { id: "newer" });
    this.chart = h("div", { class: "chart" });
    this.settingsBox = h("div", {});
    this.queuedBadge = h("span", { id: "queued-count", class: "badge", "data-status": "queued" });
    fill(
      this.main,
      h("p", { class: "crumbs" }, h("a", { href: "/" }, "Jobs"), " / ", job.id),
      h("div", { class: "title-row" },
        h("h1", { id: "job-title" }, job.name || job.id),
        this.queuedBadge,
        can("operate") ? button("Run now", () => this.trigger(), { id: "run-now", "aria-label": `Run ${job.name || job.id} now` }) : null),
      job.description ? h("p", { class: "description" }, job.description) : null,
      h("section", { class: "card", "aria-labelledby": "graph-h" },
        h("h2", { id: "graph-h" }, "Tasks"), this.selection, this.graph),
      h("div", { class: "columns" },
        h("section", { class: "card", "aria-labelledby": "settings-h" },
          h("h2", { id: "settings-h" }, "Settings"), this.settingsBox),
        h("section", { class: "card", "aria-labelledby": "chart-h" },
          h("h2", { id: "chart-h" }, `Duration of the last ${CHART_RUNS} runs`), this.chart)),
      h("section", { class: "card", "aria-labelledby": "runs-h" },
        h("h2", { id: "runs-h" }, "Runs"),
        h("div", { class: "scroll" }, h("table", { id: "runs" },
          h("thead", {}, h("tr", {},
            ...["Run", "Status", "Trigger", "Started", "Duration", "Error", ""].map((t) => h("th", { scope: "col" }, t)))),
          this.runsBody)),
        h("div", { class: "pager" }, this.newer, this.older)),
      taskTable(job),
    );
    this.showSettings();
    this.drawGraph();
    this.drawChart();
  }

  /** The settings and the queue's length, from this.job (re-read when the queue changes). */
  showSettings() {
    fill(this.settingsBox, settings(this.job));
    const queued = this.job.queued_runs || 0;
    this.queuedBadge.textContent = `${queued} queued`;
    this.queuedBadge.hidden = !queued;
  }

  rereadJob() {
    return this.page.reread(async () => {
      const job = await get(path("api", "jobs", this.jobId), this.page.signal);
      if (!this.page.active) return;
      this.job = job;
      this.showSettings();
    });
  }

  drawGraph() {
    const tasks = this.job.tasks || [];
    if (tasks.length > LIST_THRESHOLD) {
      this.list = h("ol", { id: "dag-list", class: "dag-list" },
        tasks.map((task) => h("li", { "data-task-id": task.id, "data-status": "none" },
          h("strong", {}, task.id),
          task.depends_on?.length ? ` ← ${task.depends_on.join(", ")}` : "",
          task.condition && task.condition !== "all_success" ? ` (${task.condition})` : "")));
      fill(this.graph, h("p", { class: "muted" }, `${tasks.length} tasks: too many to draw, shown as a list in DAG order.`), this.list);
      return;
    }
    this.svg = svgEl("svg", { id: "dag", role: "img", "aria-label": `Graph of the ${tasks.length} tasks of ${this.job.id}` });
    fill(this.graph, this.svg);
    drawDag(this.svg, layoutDag(tasks), new Map(tasks.map((t) => [t.id, t])));
    this.svg.addEventListener("click", (event) => {
      const node = event.target.closest("g.node");
      if (node && this.selected) this.page.navigate(`${path("runs", this.selected)}${query({ task: node.dataset.taskId })}`);
    });
  }

  drawChart() {
    const svg = svgEl("svg", { id: "durations", role: "img", "aria-label": "Run durations, oldest left" });
    fill(this.chart, this.chartRuns.length ? svg : h("p", { class: "muted" }, "No runs yet."));
    if (this.chartRuns.length) drawDurations(svg, this.chartRuns, (runId) => this.select(runId), this.selected);
  }

  async loadRuns() {
    const before = this.cursors[this.cursors.length - 1];
    const reply = await get(`${path("api", "jobs", this.jobId)}/runs${query({ limit: PAGE, before })}`, this.page.signal);
    if (!this.page.active) return;
    const same = this.runs && JSON.stringify(reply.runs) === JSON.stringify(this.runs);
    this.runs = reply.runs;
    this.nextBefore = reply.next_before ?? null;
    // a re-read that found nothing new leaves the rows (and a click landing on one) alone
    if (!same) this.renderRuns();
    else this.showPager();
  }

  renderRuns() {
    const now = Date.now();
    fill(this.runsBody, this.runs.length ? this.runs.map((run) => h("tr", {
      "data-run-id": run.id,
      class: run.id === this.selected ? "selected" : null,
    },
      h("td", {}, h("a", { href: path("runs", run.id) }, run.id)),
      h("td", {}, h("span", { class: "badge", "data-status": run.status }, run.status)),
      h("td", { class: "trigger", "data-trigger": run.trigger }, triggerLabel(run.trigger)),
      h("td", { title: run.started_at ? new Date(run.started_at).toISOString() : "" }, run.started_at ? `${clock(run.started_at, now)} (${relative(run.started_at, now)})` : "—"),
      h("td", {}, duration(elapsed(run, now))),
      h("td", { class: "error" }, run.error || ""),
      h("td", {}, button("Show in graph", () => this.select(run.id), {
        class: "select-run link",
        "aria-label": `Colour the graph by run ${run.id}`,
        "aria-pressed": run.id === this.selected ? "true" : "false",
      })),
    )) : h("tr", {}, h("td", { colspan: 7 }, "No runs on this page.")));
    this.showPager();
  }

  showPager() {
    this.newer.disabled = this.cursors.length <= 1;
    this.older.disabled = !this.nextBefore;
  }

  async page_(step) {
    if (this.paging) return; // one page at a time: a second click would skip a page
    this.paging = true;
    if (step > 0) this.cursors.push(this.nextBefore);
    else this.cursors.pop();
    try {
      await this.loadRuns();
    } catch (error) {
      this.page.fail(error);
    } finally {
      this.paging = false;
    }
  }

  async loadStates() {
    const runId = this.selected;
    const states = new Map();
    if (runId) {
      try {
        const reply = await get(`${path("api", "runs", runId)}/tasks`, this.page.signal);
        for (const task of reply.tasks) states.set(task.task_id, task.status);
      } catch (error) {
        if (error.status !== 404) throw error; // a run removed by retention: tasks uncoloured
      }
    }
    if (runId !== this.selected || !this.page.active) return; // another run was picked meanwhile
    this.states = states;
    this.selection.textContent = runId ? `Coloured by run ${runId}.` : "No run yet: the graph shows the tasks only.";
    this.colour();
  }

  colour() {
    if (this.svg) colourDag(this.svg, this.states);
    for (const item of this.list?.children || []) item.dataset.status = this.states.get(item.dataset.taskId) || "none";
  }

  async select(runId) {
    this.pinned = runId;
    const url = new URL(location.href);
    url.searchParams.set("run", runId);
    history.replaceState(null, "", url.pathname + url.search);
    this.renderRuns();
    this.drawChart();
    await this.page.reread(() => this.loadStates());
  }

  async trigger() {
    try {
      await post(`${path("api", "jobs", this.jobId)}/trigger`, this.page.signal);
    } catch (error) {
      this.page.fail(error);
    }
  }

  onEvent(name, data) {
    if (name === "reset") {
      this.page.reread(() => this.refresh());
    } else if (name === "run") {
      this.onRun(data);
    } else if (name === "task" && data.run_id === this.selected) {
      this.states.set(data.task_id, data.status);
      this.colour();
    }
  }

  onRun(run) {
    const followed = this.selected;
    // a run joined or left the job's queue: its length (queued_runs) is in the job
    const known = this.runs?.find((r) => r.id === run.id) || this.chartRuns.find((r) => r.id === run.id);
    if ((run.status === "queued" || known?.status === "queued") && !this.page.replaying) this.rereadJob();
    upsert(this.chartRuns, run, CHART_RUNS);
    if (this.cursors.length === 1 && upsert(this.runs, run, PAGE)) {
      this.nextBefore = this.runs[this.runs.length - 1].id; // the row pushed off is on the next page
    }
    this.drawChart();
    this.renderRuns();
    if (this.selected !== followed && !this.page.replaying) this.page.reread(() => this.loadStates());
  }
}

/** Merge a run into a newest-first list of at most `limit`; true when one fell off its end. */
function upsert(runs, run, limit) {
  const index = runs.findIndex((known) => known.id === run.id);
  if (index >= 0) {
    runs[index] = { ...runs[index], ...run };
    return false;
  }
  runs.unshift(run);
  const full = runs.length > limit;
  runs.length = Math.min(runs.length, limit);
  return full;
}

function settings(job) {
  const now = Date.now();
  const schedules = job.schedules?.length ? job.schedules : job.schedule ? [{ cron: job.schedule, timezone: job.timezone || "UTC" }] : [];
  const rows = [
    ["Id", job.id],
    ["Schedule", schedules.length
      ? h("ul", { class: "schedules" }, schedules.map((s) => h("li", {},
        s.words || s.cron, h("span", { class: "muted small" }, ` ${s.cron}${zoneUnsaid(s)}`))))
      : "none (manual or dependency only)"],
    ["Next fire", job.next_run_at ? `${clock(job.next_run_at, now)} (${relative(job.next_run_at, now)})` : job.paused ? "paused" : "—"],
    ["Enabled", job.enabled ? "yes" : "no"],
    ["Max concurrency", job.max_concurrency ?? "unlimited"],
    schedules.length ? ["Catch-up", catchupText(job)] : null,
    schedules.length ? ["Overlap", overlapText(job)] : null,
    schedules.length ? ["Jitter", job.jitter_secs ? `up to ${duration(job.jitter_secs * 1000)}` : "none"] : null,
    ["Run timeout", job.timeout_secs ? duration(job.timeout_secs * 1000) : "none"],
    ["Queued runs", `${job.queued_runs || 0} of at most ${job.max_queued ?? 10}`],
    ["Depends on jobs", job.depends_on?.length
      ? job.depends_on.map((dep, i) => [i ? ", " : "", h("a", { href: path("jobs", dep.job) }, dep.job), ` (${dep.condition})`])
      : "none"],
    ["Tasks", String(job.task_count ?? (job.tasks || []).length)],
  ].filter(Boolean);
  return h("dl", { id: "settings", class: "settings" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** " (zone)" after a schedule's cron, unless its words already name the zone. */
function zoneUnsaid(schedule) {
  return (schedule.words || "").endsWith(`(${schedule.timezone})`) ? "" : ` (${schedule.timezone})`;
}

/** What happens to the fires that fell while petit was down. */
function catchupText(job) {
  const window = job.catchup_window_secs ? ` fire within ${duration(job.catchup_window_secs * 1000)}` : "";
  if (job.catchup === "latest") return `latest: after downtime, run the latest missed${window || " fire"}`;
  if (job.catchup === "all") return `all: after downtime, run every missed${window || " fire"}`;
  return "none: fires missed while petit was down are skipped";
}

/** What a fire does when the job is at its max_concurrency. */
function overlapText(job) {
  const texts = {
    skip: "skip: a fire that finds the job busy is dropped",
    queue: `queue: a fire that finds the job busy waits (at most ${plural(job.max_queued ?? 10, "run")})`,
    replace: "replace: a new fire cancels the running run",
    allow: "allow: scheduled fires ignore max_concurrency",
  };
  return texts[job.overlap] || job.overlap || "skip";
}

function retryText(retry) {
  if (!retry || !retry.max_attempts) return "none";
  if (retry.words) return retry.words; // the policy in words, as petit list says it
  const delay = retry.delay_secs ? ` every ${duration(retry.delay_secs * 1000)}` : "";
  const when = retry.condition && retry.condition !== "always" ? `, ${retry.condition}` : "";
  return `${retry.max_attempts}×${delay}${when}`;
}

function taskTable(job) {
  const tasks = job.tasks || [];
  if (!tasks.length || tasks.length > LIST_THRESHOLD) return null;
  return h("section", { class: "card", "aria-labelledby": "tasks-h" },
    h("h2", { id: "tasks-h" }, "Task settings"),
    h("div", { class: "scroll" }, h("table", { id: "task-settings" },
      h("thead", {}, h("tr", {}, ...["Task", "Type", "Depends on", "Condition", "Retries", "Timeout"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, tasks.map((task) => h("tr", { "data-task-id": task.id },
        h("td", {}, task.id, task.name && task.name !== task.id ? h("div", { class: "muted small" }, task.name) : null),
        h("td", {}, task.type || "command"),
        h("td", {}, (task.depends_on || []).join(", ") || "—"),
        h("td", {}, task.condition || "all_success"),
        h("td", {}, retryText(task.retry)),
        h("td", {}, task.timeout_secs ? duration(task.timeout_secs * 1000) : "none"),
      ))))));
}
