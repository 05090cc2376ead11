// The run page's log viewer. A task log can hold 1 MiB / 20,000+ lines: putting each in the DOM
// freezes the page, so the view is virtualised: every line has the same height, a spacer gives
// the scroll box its full height, and only the rows in sight (plus a margin) exist as elements,
// taken from a small pool. Appends only record lines and ask for one render per animation frame.

const LINE_H = 18; // px; set on each row from here so CSS cannot make the arithmetic wrong
const OVERSCAN = 12; // rows kept above and below the visible window so a fast scroll shows text
const MAX_LINE_CHARS = 5000; // a single huge line is cut for display (white-space: pre, one row)
const TRUNCATED_TEXT = "[… earlier output was truncated …]";

export class LogView {
  #lines = []; // [{stream, text}] as appended
  #shown = []; // indices into #lines of the lines whose stream is enabled
  #streams = { stdout: true, stderr: true };
  #follow = true;
  #truncated = false;
  #frame = 0;
  #lastTop = 0;
  #rows = []; // pooled row elements, in display order
  #drawnFirst = -1; // the row range now in the DOM, so a scroll within one row draws nothing
  #drawnLast = -1;
  #spacer;
  #window;

  /** Render into container (#log-lines), which becomes the scroll box. */
  constructor(container) {
    this.container = container;
    container.classList.add("logview");
    if (!container.hasAttribute("tabindex")) container.tabIndex = 0; // keyboard can scroll it
    this.#spacer = document.createElement("div");
    this.#spacer.className = "logview-spacer";
    this.#window = document.createElement("div");
    this.#window.className = "logview-window";
    this.#spacer.append(this.#window);
    container.replaceChildren(this.#spacer);
    container.addEventListener("scroll", () => this.#onScroll(), { passive: true });
    // A resized (or newly shown) box needs more or fewer rows, and the end again when following.
    new ResizeObserver(() => this.#schedule()).observe(container);
    this.#schedule();
  }

  /** Forget every line and the truncated mark (a new task or attempt was picked). */
  clear() {
    this.#lines = [];
    this.#shown = [];
    this.#truncated = false;
    this.#schedule();
  }

  /** Add lines [{stream: "stdout"|"stderr", text}]; drawn at the next animation frame. */
  append(lines) {
    for (const line of lines) {
      const text = String(line.text ?? "");
      // One row is one line: a text holding newlines would overflow its fixed-height row.
      const parts = text.includes("\n") ? text.split("\n") : [text];
      for (const part of parts) {
        // A loop, not push(...lines): spreading 100k+ arguments overflows the stack.
        if (this.#streams[line.stream] !== false) this.#shown.push(this.#lines.length);
        this.#lines.push({ stream: line.stream, text: part });
      }
    }
    this.#schedule();
  }

  /** Show or hide each stream, e.g. {stdout: true, stderr: false}. */
  setStreams(streams) {
    this.#streams = { ...this.#streams, ...streams };
    this.#shown = [];
    this.#lines.forEach((line, i) => {
      if (this.#streams[line.stream] !== false) this.#shown.push(i);
    });
    this.#schedule();
  }

  /** Whether the view sticks to the end as lines arrive; a change fires "followchange". */
  get follow() {
    return this.#follow;
  }

  set follow(value) {
    const follow = Boolean(value);
    if (follow === this.#follow) return;
    this.#follow = follow;
    this.container.dispatchEvent(new CustomEvent("followchange", { detail: { follow } }));
    this.#schedule();
  }

  /** Show a first row saying the log's start was cut (the store keeps its end). */
  setTruncated(truncated) {
    this.#truncated = Boolean(truncated);
    this.container.toggleAttribute("data-truncated", this.#truncated);
    this.#schedule();
  }

  /** Lines loaded, whichever streams are shown. */
  get lineCount() {
    return this.#lines.length;
  }

  #schedule() {
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#render());
  }

  // A scroll that moved up and left the end is the user's: follow off. Scrolls made by render
  // (to the end) or by the box shrinking after a filter keep the end in sight and do not count.
  #onScroll() {
    const box = this.container;
    const top = box.scrollTop;
    const atEnd = top + box.clientHeight >= box.scrollHeight - LINE_H / 2;
    if (this.#follow && top < this.#lastTop - 1 && !atEnd) this.follow = false;
    this.#lastTop = top;
    this.#drawWindow();
  }

  #render() {
    this.#frame = 0;
    const box = this.container;
    this.#spacer.style.height = `${this.#rowCount() * LINE_H}px`;
    if (this.#follow) box.scrollTop = box.scrollHeight;
    this.#lastTop = box.scrollTop;
    this.#drawWindow(true);
    box.setAttribute("data-line-count", String(this.#lines.length));
  }

  #rowCount() {
    return this.#shown.length + (this.#truncated ? 1 : 0);
  }

  // Fill the pooled rows with the lines from just above to just below the visible window.
  #drawWindow(force = false) {
    const box = this.container;
    const total = this.#rowCount();
    const view = box.clientHeight || LINE_H * 30;
    const first = Math.max(0, Math.floor(box.scrollTop / LINE_H) - OVERSCAN);
    const last = Math.min(total, Math.ceil((box.scrollTop + view) / LINE_H) + OVERSCAN);
    if (!force && first === this.#drawnFirst && last === this.#drawnLast) return;
    this.#drawnFirst = first;
    this.#drawnLast = last;
    this.#window.style.transform = `translateY(${first * LINE_H}px)`;
    const count = Math.max(0, last - first);
    while (this.#rows.length < count) this.#rows.push(this.#newRow());
    for (let i = 0; i < count; i++) this.#fill(this.#rows[i], first + i);
    if (this.#window.childElementCount !== count) {
      this.#window.replaceChildren(...this.#rows.slice(0, count));
    }
  }

  #newRow() {
    const row = document.createElement("div");
    row.style.height = `${LINE_H}px`;
    row.style.lineHeight = `${LINE_H}px`;
    return row;
  }

  #fill(row, rowIndex) {
    const offset = this.#truncated ? 1 : 0;
    if (rowIndex < offset) {
      row.className = "logview-line logview-truncated";
      row.removeAttribute("data-stream");
      row.textContent = TRUNCATED_TEXT;
      return;
    }
    const line = this.#lines[this.#shown[rowIndex - offset]];
    const stream = line.stream === "stderr" ? "stderr" : "stdout";
    row.className = stream === "stderr" ? "logview-line stderr" : "logview-line";
    row.setAttribute("data-stream", stream);
    const text = line.text;
    // textContent: a log line is untrusted and must never be parsed as markup.
    row.textContent =
      text.length > MAX_LINE_CHARS
        ? `${text.slice(0, MAX_LINE_CHARS)} … (${text.length - MAX_LINE_CHARS} more characters)`
        : text;
  }
}
