// A run: its tasks, a timeline of their attempts, and a log viewer that follows a task's output
// live. Live: the run's run and task events; a followed log is its own stream (the logs route's
// ?follow=true), which starts from the first line and resumes where it broke off.

import { can, get, post, query, readStream } from "./api.js";
import { button, fill, h, path } from "./dom.js";
import { clock, duration, elapsed, isTerminal, plural, relative, triggerLabel, usage } from "./format.js";
import { drawGantt } from "./gantt.js";
import { LogView } from "./logview.js";
import { svgEl } from "./svg.js";

export const NAME = "run";

export async function mount(main, [runId], search, page) {
  const view = new RunView(main, runId, search, page);
  // the stream first: the events that come while the page loads are applied once it has
  page.stream(`/api/events${query({ run_id: runId, event: ["run", "task"] })}`, (name, data) => view.loaded && view.onEvent(name, data), {
    settle: () => view.refresh(),
  });
  await page.reread(() => view.load());
  if (!view.loaded || page.signal.aborted) return; // failed, or left while it loaded
  const timer = setInterval(() => view.tick(), 1000);
  page.signal.addEventListener("abort", () => {
    clearInterval(timer);
    view.stopLog();
  });
}

class RunView {
  constructor(main, runId, search, page) {
    this.main = main;
    this.runId = runId;
    this.page = page;
    this.wantTask = search.get("task");
    this.wantAttempt = Number(search.get("attempt")) || null; // null: the latest, as it changes
    this.tasks = new Map(); // task id -> TaskState JSON
    this.drawPending = false;
  }

  /** The run and its tasks from the API into this.run and this.tasks; false if the page went. */
  async read() {
    const base = path("api", "runs", this.runId);
    const [run, tasks] = await Promise.all([get(base, this.page.signal), get(`${base}/tasks`, this.page.signal)]);
    if (!this.page.active) return false;
    this.run = run;
    for (const task of tasks.tasks) this.tasks.set(task.task_id, task);
    return true;
  }

  async load() {
    if (!(await this.read())) return;
    this.render();
    this.loaded = true;
    this.page.ready();
  }

  /** Re-read the run and its tasks; the log viewer goes on with its own stream. */
  async refresh() {
    if (await this.read()) this.followLatest();
  }

  render() {
    const run = this.run;
    document.title = `${run.id} · petit`;
    this.status = h("span", { id: "run-status", class: "badge" });
    this.summary = h("p", { class: "muted", id: "run-summary" });
    this.queued = h("p", { class: "notice", id: "run-queued" },
      "Queued: this run waits for a free slot of its job (its max_concurrency, or petit's --max-jobs). "
      + "No task has started; queued runs start oldest first as slots free. Cancel it to drop it.");
    this.cancel = button("Cancel run", () => this.cancelRun(), { id: "cancel", class: "danger", "aria-label": `Cancel run ${run.id}` });
    this.tasksBody = h("tbody");
    this.gantt = svgEl("svg", { id: "gantt", role: "img", "aria-label": "Timeline of the task attempts" });
    this.taskSelect = h("select", { id: "log-task", "aria-label": "Task" });
    this.attemptSelect = h("select", { id: "log-attempt", "aria-label": "Attempt" });
    this.stdout = h("input", { type: "checkbox", id: "log-stdout", checked: true });
    this.stderr = h("input", { type: "checkbox", id: "log-stderr", checked: true });
    this.followBox = h("input", { type: "checkbox", id: "log-follow", checked: true });
    this.truncated = h("p", { id: "log-truncated", class: "notice" }, "The start of this log was cut: petit keeps the last 1–2 MiB of each attempt.");
    this.truncated.hidden = true;
    this.logState = h("span", { class: "muted", id: "log-state" });
    const lines = h("div", { id: "log-lines", class: "log-lines", tabindex: "0", "aria-label": "Log lines" });
    fill(
      this.main,
      h("p", { class: "crumbs" }, h("a", { href: "/" }, "Jobs"), " / ", h("a", { href: path("jobs", run.job_id) }, run.job_id), " / ", run.id),
      h("div", { class: "title-row" }, h("h1", { id: "run-title" }, `Run ${run.id}`), this.status, this.cancel),
      this.summary,
      this.queued,
      h("section", { class: "card", "aria-labelledby": "tasks-h" },
        h("h2", { id: "tasks-h" }, "Tasks"),
        h("div", { class: "scroll" }, h("table", { id: "tasks" },
          h("thead", {}, h("tr", {}, ...["Task", "Status", "Attempts", "Exit code", "Duration", "Used", "Started", "Error", ""].map((t) => h("th", { scope: "col" }, t)))),
          this.tasksBody))),
      h("section", { class: "card", "aria-labelledby": "gantt-h" },
        h("h2", { id: "gantt-h" }, "Timeline"), h("div", { class: "scroll" }, this.gantt)),
      h("section", { class: "card", id: "log", "aria-labelledby": "log-h" },
        h("h2", { id: "log-h" }, "Log"),
        h("div", { class: "log-controls" },
          h("label", {}, "Task ", this.taskSelect),
          h("label", {}, "Attempt ", this.attemptSelect),
          h("label", {}, this.stdout, " stdout"),
          h("label", {}, this.stderr, " stderr"),
          h("label", {}, this.followBox, " follow"),
          this.logState),
        this.truncated,
        lines),
    );
    this.log = new LogView(lines);
    const streams = () => this.log.setStreams({ stdout: this.stdout.checked, stderr: this.stderr.checked });
    this.stdout.addEventListener("change", streams);
    this.stderr.addEventListener("change", streams);
    this.followBox.addEventListener("change", () => { this.log.follow = this.followBox.checked; });
    lines.addEventListener("followchange", () => { this.followBox.checked = this.log.follow; });
    this.taskSelect.addEventListener("change", () => this.showLog(this.taskSelect.value, null));
    this.attemptSelect.addEventListener("change", () => this.showLog(this.logTask, Number(this.attemptSelect.value)));
    this.update();
    const linked = this.wantTask && this.tasks.has(this.wantTask);
    const first = linked ? this.wantTask : this.defaultTask();
    // an attempt from the address only with its task, and only one that exists
    const attempt = linked && this.wantAttempt <= this.tasks.get(first).attempts ? this.wantAttempt : null;
    if (first) this.showLog(first, attempt, true);
  }

  defaultTask() {
    const tasks = [...this.tasks.values()];
    const pick = tasks.find((t) => t.status === "running") || tasks.find((t) => t.status === "failed")
      || [...tasks].reverse().find((t) => t.attempts > 0) || tasks[0];
    return pick?.task_id;
  }

  /** Everything but the log, from this.run and this.tasks. */
  update() {
    const run = this.run;
    const now = Date.now();
    this.status.textContent = run.status;
    this.status.dataset.status = run.status;
    this.cancel.hidden = isTerminal(run.status) || !can("operate");
    this.queued.hidden = run.status !== "queued";
    this.showSummary(now);
    fill(this.tasksBody, [...this.tasks.values()].map((task) => this.taskRow(task, now)));
    this.fillTaskSelect();
    this.drawTimeline(now);
  }

  showSummary(now) {
    const run = this.run;
    const took = elapsed(run, now);
    // a scheduled run says for which fire (a catch-up one fell while petit was down) and how
    // long the job's jitter held it back
    const fire = run.scheduled_at ? `, for the fire of ${clock(run.scheduled_at, now)}` : "";
    const jitter = run.jitter_ms ? ` (+${duration(run.jitter_ms)} jitter)` : "";
    fill(this.summary,
      `${triggerLabel(run.trigger)} run of `, h("a", { href: path("jobs", run.job_id) }, run.job_id),
      fire, jitter,
      run.started_at ? `, started ${clock(run.started_at, now)}` : `, created ${clock(run.created_at, now)}`,
      took !== null ? `, ${isTerminal(run.status) ? "took" : "running for"} ${duration(took)}` : "",
      isTerminal(run.status) && usage(run) !== "–" ? `, used ${usage(run)}` : "",
      run.error ? h("span", { class: "error" }, ` · ${run.error}`) : "");
  }

  taskRow(task, now) {
    return h("tr", { "data-task-id": task.task_id, class: task.task_id === this.logTask ? "selected" : null },
      h("td", {}, task.task_id),
      h("td", { class: "status", "data-status": task.status }, h("span", { class: "badge", "data-status": task.status }, task.status),
        task.next_attempt_at ? h("span", { class: "next-attempt muted small" }, nextAttempt(task, now)) : null),
      h("td", { class: "attempts" }, String(task.attempts)),
      h("td", { class: "exit-code" }, task.exit_code ?? "", task.timed_out ? " (timed out)" : ""),
      h("td", { class: "duration" }, duration(elapsed(task, now))),
      h("td", { class: "usage" }, usage(task)),
      h("td", {}, task.started_at ? clock(task.started_at, now) : ""),
      h("td", { class: "error" }, task.error || ""),
      h("td", {}, button("Logs", () => this.showLog(task.task_id, null), { class: "link", "aria-label": `Show the log of ${task.task_id}` })),
    );
  }

  fillTaskSelect() {
    const ids = [...this.tasks.keys()];
    if (this.taskSelect.options.length !== ids.length) {
      fill(this.taskSelect, ids.map((id) => h("option", { value: id }, id)));
    }
    if (this.logTask) this.taskSelect.value = this.logTask;
    const attempts = this.tasks.get(this.logTask)?.attempts || 0;
    if (this.attemptSelect.options.length !== attempts) {
      fill(this.attemptSelect, Array.from({ length: attempts }, (_, i) => h("option", { value: String(i + 1) }, `#${i + 1}`)));
    }
    if (this.logAttempt) this.attemptSelect.value = String(this.logAttempt);
    this.attemptSelect.disabled = attempts < 2;
  }

  drawTimeline(now) {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      if (this.page.active) drawGantt(this.gantt, [...this.tasks.values()], now);
    });
  }

  /** Show one attempt's log (the latest when `attempt` is null, and the next ones as they come). */
  showLog(taskId, attempt, initial = false) {
    const task = this.tasks.get(taskId);
    if (!task) return;
    this.pinnedAttempt = attempt;
    const shown = attempt || task.attempts || null;
    if (!initial && taskId === this.logTask && shown === this.logAttempt) return;
    this.stopLog();
    this.logTask = taskId;
    this.logAttempt = shown;
    this.log.clear();
    this.log.setTruncated(false);
    this.truncated.hidden = true;
    if (!initial) {
      const url = new URL(location.href);
      url.searchParams.set("task", taskId);
      if (attempt) url.searchParams.set("attempt", String(attempt));
      else url.searchParams.delete("attempt");
      history.replaceState(null, "", url.pathname + url.search);
    }
    this.update();
    if (!shown) {
      this.logState.textContent = "not started yet";
      return;
    }
    this.followLog(taskId, shown);
  }

  followLog(taskId, attempt) {
    const controller = new AbortController();
    this.logController = controller;
    let received = 0;
    this.logState.textContent = "loading…";
    const url = `${path("api", "runs", this.runId, "tasks", taskId, "logs")}${query({ attempt, follow: "true" })}`;
    const onMessage = (name, data, id) => {
      if (name === "log") {
        const sent = Number((id || "").split(":")[1]);
        if (Number.isFinite(sent) && sent - data.lines.length > received) this.markTruncated();
        received = Number.isFinite(sent) ? sent : received + data.lines.length;
        this.log.append(data.lines.map((text) => ({ stream: data.stream, text })));
        this.logState.textContent = `${plural(this.log.lineCount, "line")}, live`;
      } else if (name === "error") {
        this.logState.textContent = "the log cannot be read";
        controller.abort(); // the route said why; reconnecting would only say it again
        this.page.fail(new Error(data?.error || "the log cannot be read"));
      } else if (name === "end") {
        this.logState.textContent = `${plural(this.log.lineCount, "line")}${data.status ? `, ${data.status}` : ""}`;
        controller.abort();
      }
    };
    readStream(url, { signal: controller.signal, onMessage }).catch((error) => {
      if (this.logController === controller) this.page.fail(error);
    });
  }

  markTruncated() {
    this.truncated.hidden = false;
    this.log.setTruncated(true);
  }

  stopLog() {
    this.logController?.abort();
    this.logController = null;
  }

  async cancelRun() {
    this.cancel.disabled = true;
    try {
      await post(`${path("api", "runs", this.runId)}/cancel`, this.page.signal);
    } catch (error) {
      this.page.fail(error);
    } finally {
      this.cancel.disabled = false;
    }
  }

  onEvent(name, data) {
    if (name === "reset") {
      this.page.reread(() => this.refresh());
      return;
    }
    if (name === "run") this.run = { ...this.run, ...data };
    else if (name === "task") {
      const { job_id: _job, retry_delay_secs: _delay, ...task } = data;
      this.tasks.set(task.task_id, { ...this.tasks.get(task.task_id), ...task });
    }
    this.followLatest();
  }

  /** Update the page; when a new attempt of the task on show began, follow it (unless an
   * attempt was picked). */
  followLatest() {
    const task = this.tasks.get(this.logTask);
    if (task && !this.pinnedAttempt && task.attempts && task.attempts !== this.logAttempt) {
      this.showLog(task.task_id, null, true); // updates the page too
    } else {
      this.update();
    }
  }

  /** Once a second while the run goes on, without the network: the running durations. */
  tick() {
    if (isTerminal(this.run.status)) return;
    const now = Date.now();
    this.showSummary(now);
    for (const row of this.tasksBody.rows) {
      const task = this.tasks.get(row.dataset.taskId);
      if (task?.status === "running") row.querySelector(".duration").textContent = duration(elapsed(task, now));
      const next = row.querySelector(".next-attempt");
      if (next && task?.next_attempt_at) next.textContent = nextAttempt(task, now);
    }
    this.drawTimeline(now);
  }
}

/** A retry waiting its delay: " · next attempt in 3.2s" (the API's next_attempt_at). */
function nextAttempt(task, now) {
  return ` · next attempt ${relative(task.next_attempt_at, now)}`;
}
