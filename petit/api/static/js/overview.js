// The overview: every job with its last runs, the scheduler's state and the service's health.
// Loaded once, then kept current by the event stream: a run event updates its job's row in place;
// only what the events do not carry (the next fire after a fire, a child's restart) is re-read.

import { can, get, post, query } from "./api.js";
import { button, fill, h, path } from "./dom.js";
import { clock, duration, elapsed, isTerminal, plural, relative, triggerLabel } from "./format.js";

export const NAME = "overview";
const RECENT = 20;
const STALE_MS = 3000; // a next fire this far past with no run event: re-read the job
// A run shown in flight with no news for this long is re-read: a safety net, should an event
// have been missed while the stream (re)connected, so a square never stays "running" for good.
const SILENT_MS = 5000;
const LIVE_EVENTS = ["run", "scheduler", "child"];

export async function mount(main, _params, _search, page) {
  const view = new Overview(main, page);
  // the stream first: the events that come while the page loads are applied once it has
  page.stream(`/api/events${query({ event: LIVE_EVENTS })}`, (name, data) => view.loaded && view.onEvent(name, data), {
    settle: () => view.load(),
  });
  await page.reread(() => view.load());
  if (!view.loaded || page.signal.aborted) return; // failed, or left while it loaded
  const timer = setInterval(() => view.tick(), 1000);
  page.signal.addEventListener("abort", () => clearInterval(timer));
}

class Overview {
  constructor(main, page) {
    this.page = page;
    this.jobs = new Map(); // id -> job JSON with recent_runs, newest first
    this.rows = new Map(); // id -> tr
    this.rereads = new Map(); // id -> when the job was last re-read
    this.heard = new Map(); // run id -> when it was last updated, for runs in flight
    this.stateText = h("strong", { id: "scheduler-state" }, "…");
    this.pauseButton = button("Pause scheduler", () => this.act("/api/scheduler/pause"), { id: "pause" });
    this.resumeButton = button("Resume scheduler", () => this.act("/api/scheduler/resume"), { id: "resume" });
    this.health = h("ul", { id: "health", class: "health" });
    this.body = h("tbody");
    this.count = h("span", { class: "muted" });
    fill(
      main,
      h("section", { class: "card service", "aria-label": "Service" },
        h("div", { class: "scheduler" }, "Scheduler: ", this.stateText, " ",
          can("admin") ? [this.pauseButton, this.resumeButton] : null),
        this.health),
      h("h1", {}, "Jobs ", this.count),
      h("div", { class: "scroll" },
        h("table", { id: "jobs", class: "jobs" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Job"),
            h("th", { scope: "col" }, "Status"),
            h("th", { scope: "col" }, "Schedule"),
            h("th", { scope: "col" }, "Next fire"),
            h("th", { scope: "col" }, `Last ${RECENT} runs`),
            h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
          this.body)),
    );
  }

  async load() {
    const [jobs, status] = await Promise.all([
      get(`/api/jobs${query({ recent: RECENT })}`, this.page.signal),
      get("/api/status", this.page.signal),
    ]);
    if (!this.page.active) return;
    const fresh = new Map(jobs.jobs.map((job) => [job.id, job]));
    const sameJobs = fresh.size === this.jobs.size && [...fresh.keys()].every((id) => this.rows.has(id));
    const changed = [...fresh.values()].filter((job) => JSON.stringify(job) !== JSON.stringify(this.jobs.get(job.id)));
    this.jobs = fresh;
    this.loaded = true;
    this.showStatus(status);
    // a re-read (settle, reset) redraws only the rows that changed: the rest keep their focus
    if (sameJobs) changed.forEach((job) => this.rerender(job.id));
    else this.renderAll();
    this.page.ready();
  }

  renderAll() {
    this.rows.clear();
    const rows = [...this.jobs.values()].map((job) => this.row(job));
    fill(this.body, rows.length ? rows : h("tr", {}, h("td", { colspan: 6 }, "No jobs. Add YAML files to the jobs folder, then petit ctl reload.")));
    this.count.textContent = `(${this.jobs.size})`;
  }

  row(job) {
    const now = Date.now();
    const runs = job.recent_runs || [];
    // a run in flight before a queued one: the queued ones have their own count
    const active = runs.find((run) => !isTerminal(run.status) && run.status !== "queued")
      || runs.find((run) => run.status === "queued");
    // the newest run's outcome as the events told it: the stored summary may lag behind it
    const status = active ? active.status : runs[0]?.status || job.last_run_status || "none";
    const squares = runs.slice().reverse().map((run) => square(run, now));
    const row = h("tr", { "data-job-id": job.id },
      h("td", { class: "job-name" },
        h("a", { href: path("jobs", job.id) }, job.name || job.id),
        h("div", { class: "muted small" }, job.id)),
      h("td", { class: "job-status", "data-status": status },
        h("span", { class: "badge", "data-status": status }, status === "none" ? "never run" : status),
        job.queued_runs ? h("span", { class: "badge queued-count", "data-status": "queued" }, `${job.queued_runs} queued`) : null,
        !job.enabled ? h("span", { class: "badge muted" }, "disabled") : null,
        job.paused ? h("span", { class: "badge paused" }, "paused") : null),
      h("td", { class: "job-schedule" }, job.schedule ? job.schedule_words || job.schedule : h("span", { class: "muted" }, "manual only")),
      h("td", { class: "job-next", title: job.next_run_at ? clock(job.next_run_at, now) : "" }, nextFire(job, now)),
      h("td", { class: "recent" }, squares),
      h("td", { class: "actions" },
        can("operate") ? button("Run now", (event) => this.trigger(job, event.currentTarget), {
          class: "run-now",
          "aria-label": `Run ${job.name || job.id} now`,
        }) : null),
    );
    this.rows.set(job.id, row);
    return row;
  }

  rerender(jobId) {
    const job = this.jobs.get(jobId);
    const old = this.rows.get(jobId);
    if (!job || !old) return;
    const focused = old.contains(document.activeElement) ? document.activeElement.className : null;
    const fresh = this.row(job);
    old.replaceWith(fresh);
    if (focused) fresh.querySelector(`.${focused.split(" ")[0]}`)?.focus();
  }

  showStatus(status) {
    this.setState(status.scheduler?.state || "stopped");
    fill(this.health, (status.children || []).map((child) => h("li", { "data-child": child.name },
      h("strong", {}, child.name), `: ${child.state}`,
      child.uptime_secs !== null && child.uptime_secs !== undefined ? `, up ${duration(child.uptime_secs * 1000)}` : "",
      `, ${plural(child.restarts, "restart")}`)));
  }

  setState(state) {
    this.state = state;
    this.stateText.textContent = state;
    this.stateText.dataset.state = state;
    this.pauseButton.disabled = state !== "running";
    this.resumeButton.disabled = state !== "paused";
  }

  async act(url) {
    try {
      await post(url, this.page.signal);
      const state = await get("/api/scheduler/state", this.page.signal);
      this.setState(state.state);
      this.refreshPaused(state.is_paused);
    } catch (error) {
      this.page.fail(error);
    }
  }

  refreshPaused(paused) {
    const changed = [...this.jobs.values()].some((job) => job.paused !== paused);
    if (changed && !this.page.replaying) this.page.reread(() => this.load()); // next fires move too
  }

  async trigger(job, target) {
    // busy, not disabled: a disabled button loses the keyboard focus
    if (target.getAttribute("aria-busy") === "true") return;
    target.setAttribute("aria-busy", "true");
    try {
      const reply = await post(`${path("api", "jobs", job.id)}/trigger`, this.page.signal);
      // the run's own events may have come first: never move a run back to pending
      if (!(job.recent_runs || []).some((run) => run.id === reply.run_id)) {
        this.onRun({ id: reply.run_id, job_id: job.id, status: reply.status, trigger: "manual", created_at: Date.now() });
      }
    } catch (error) {
      this.page.fail(error);
    } finally {
      target.removeAttribute("aria-busy");
    }
  }

  onEvent(name, data) {
    if (name === "run") this.onRun(data);
    else if (name === "scheduler") {
      this.setState(data.state);
      this.refreshPaused(data.state === "paused");
    } else if (name === "child") this.rereadStatus();
    else if (name === "reset") this.page.reread(() => this.load());
  }

  onRun(run) {
    if (isTerminal(run.status)) this.heard.delete(run.id);
    else this.heard.set(run.id, Date.now());
    const job = this.jobs.get(run.job_id);
    if (!job) {
      if (!this.page.replaying) this.page.reread(() => this.load()); // a job added by a reload
      return;
    }
    const runs = job.recent_runs || (job.recent_runs = []);
    const index = runs.findIndex((known) => known.id === run.id);
    // the job's queue grew or shrank: its count (queued_runs) is in the job, re-read below
    const queue = run.status === "queued" || runs[index]?.status === "queued";
    if (index >= 0) runs[index] = { ...runs[index], ...run };
    else {
      runs.unshift(run);
      runs.sort((a, b) => runSeq(b.id) - runSeq(a.id));
      runs.length = Math.min(runs.length, RECENT);
    }
    if (isTerminal(run.status)) {
      job.last_run_id = run.id;
      job.last_run_status = run.status;
    }
    // the next fire moved, or the queue changed
    if ((run.trigger !== "manual" || queue) && !this.page.replaying) this.reread(job.id);
    this.rerender(job.id);
  }

  reread(jobId) {
    this.rereads.set(jobId, Date.now());
    return this.page.reread(async () => {
      const fresh = await get(path("api", "jobs", jobId), this.page.signal);
      const job = this.jobs.get(jobId);
      if (!job || !this.page.active) return;
      this.jobs.set(jobId, { ...fresh, recent_runs: job.recent_runs });
      this.rerender(jobId);
    });
  }

  async rereadStatus() {
    try {
      this.showStatus(await get("/api/status", this.page.signal));
    } catch (error) {
      this.page.fail(error);
    }
  }

  /** Once a second, without the network: the words of next fires and running durations. */
  tick() {
    const now = Date.now();
    for (const [id, job] of this.jobs) {
      const row = this.rows.get(id);
      if (!row) continue;
      const next = row.querySelector(".job-next");
      const text = nextFire(job, now);
      if (next.textContent !== text) next.textContent = text;
      const overdue = job.next_run_at && now - job.next_run_at > STALE_MS;
      if (overdue && now - (this.rereads.get(id) || 0) > 10 * STALE_MS) this.reread(id);
      for (const run of job.recent_runs || []) {
        if (isTerminal(run.status)) continue;
        if (!this.heard.has(run.id)) this.heard.set(run.id, now);
        else if (now - this.heard.get(run.id) > SILENT_MS) this.rereadRun(run.id);
      }
    }
  }

  rereadRun(runId) {
    this.heard.set(runId, Date.now());
    return this.page.reread(async () => this.onRun(await get(path("api", "runs", runId), this.page.signal)));
  }
}

function nextFire(job, now) {
  if (!job.schedule) return "—";
  if (!job.enabled) return "disabled";
  if (job.paused) return "paused";
  return job.next_run_at ? relative(job.next_run_at, now) : "—";
}

function square(run, now) {
  const took = elapsed(run, now);
  const how = run.trigger === "manual" || !run.trigger ? "" : ` · ${triggerLabel(run.trigger)}`;
  const label = `${run.id} · ${run.status}${took !== null ? ` · ${duration(took)}` : ""}${how}`;
  return h("a", {
    class: "square",
    href: path("runs", run.id),
    "data-run-id": run.id,
    "data-status": run.status,
    title: label,
    "aria-label": label,
  });
}

function runSeq(id) {
  return Number(id.slice(id.lastIndexOf("-") + 1)) || 0;
}
