// The queue and history side panel: what runs, what waits, and what finished (with its
// outputs), and a way to reopen the workflow of any past run.
import { isTyping } from "./undo.js";

const HISTORY_ITEMS = 50;
const REFRESH_DELAY_MS = 150;
// Websocket messages after which the queue or the history may look different.
const REFRESH_EVENTS = ["status", "executed", "execution_start", "execution_success",
  "execution_error", "execution_interrupted", "execution_cached"];
const VIDEO_FILE = /\.(mp4|webm|mov|mkv)$/i;
const IMAGE_FILE = /\.(png|jpe?g|webp|gif|avif)$/i;

/** Add panels.css (the styles of every feature module's elements) once. */
export function loadPanelStyles() {
  if (document.getElementById("kinema-panels-css")) return;
  const href = new URL("../css/panels.css", import.meta.url).href;
  document.head.append(Object.assign(document.createElement("link"),
    { id: "kinema-panels-css", rel: "stylesheet", href }));
}

/** A new element with properties and children (the feature modules' DOM helper). */
export function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const nodeCount = (prompt) => `${Object.keys(prompt || {}).length} nodes`;

// The workflow a past run came from: the canvas the browser submitted (extra_pnginfo), else
// the API prompt (from a script), which app.loadWorkflow lays out through the server.
export function workflowOfRun(entry) {
  const [, , prompt, extraData] = entry.prompt || [];
  return extraData?.extra_pnginfo?.workflow ?? prompt ?? null;
}

// When the run ended, from its status messages (the executor stamps them in ms).
function finishedAt(entry) {
  const stamps = (entry.status?.messages || []).map(([, data]) => data?.timestamp)
    .filter(Number.isFinite);
  return stamps.length ? new Date(Math.max(...stamps)) : null;
}

function outputFiles(entry) {
  return Object.values(entry.outputs || {}).flatMap((output) => Object.values(output || {}))
    .filter(Array.isArray).flat()
    .filter((file) => file && typeof file.filename === "string");
}

class QueuePanel {
  constructor(app) {
    this.app = app;
    this.timer = null;
    this.historyKey = null;
    this.queueList = el("ol", { className: "queue-list" });
    this.historyList = el("ol", { className: "history-list" });
    const button = (label, className, onClick) => {
      const b = el("button", { className, textContent: label });
      b.addEventListener("click", onClick);
      return b;
    };
    this.root = el("aside", { id: "queue-panel", className: "kinema-panel" }, [
      el("header", {}, [el("h2", { textContent: "Queue" }),
        button("×", "close-panel", () => this.toggle(false))]),
      this.queueList,
      button("Clear queue", "clear-queue", () => this.edit(app.api.editQueue({ clear: true }))),
      el("h2", { textContent: "History" }),
      this.historyList,
      button("Clear history", "clear-history",
        () => this.edit(app.api.editHistory({ clear: true }))),
    ]);
    this.root.hidden = true;
    this.root.addEventListener("click", (event) => this.onClick(event));
    document.body.append(this.root);
  }

  get open() {
    return !this.root.hidden;
  }

  toggle(open = !this.open) {
    this.root.hidden = !open;
    document.getElementById("queue-panel-button")?.classList.toggle("active", open);
    if (open) this.refresh();
  }

  // Coalesce a burst of websocket messages (one per node) into one refresh; a closed panel
  // fetches nothing.
  scheduleRefresh() {
    if (!this.open) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  async edit(request) {
    try {
      await request;
    } catch (error) {
      this.app.showToast(error.message, "error");
    }
    this.refresh();
  }

  async refresh() {
    const { api } = this.app;
    let queue, history;
    try {
      [queue, history] = await Promise.all([api.getQueue(), api.getHistory(HISTORY_ITEMS)]);
    } catch (error) {
      this.app.showToast(`Could not refresh the queue: ${error.message}`, "error");
      return;
    }
    const running = queue.queue_running.map((item) => this.queueItem(item, true));
    const pending = [...queue.queue_pending].sort((a, b) => a[0] - b[0])
      .map((item) => this.queueItem(item, false));
    this.queueList.replaceChildren(...running, ...pending);
    if (!running.length && !pending.length) {
      this.queueList.append(el("li", { className: "empty", textContent: "Nothing queued" }));
    }
    // The server lists history oldest first; the panel shows the newest first. The list is
    // rebuilt only when it changed, so thumbnails do not flicker on every queue message.
    const entries = Object.entries(history).reverse();
    const key = JSON.stringify(entries.map(([id, entry]) => [id, entry.status?.status_str]));
    if (key === this.historyKey) return;
    this.historyKey = key;
    this.historyList.replaceChildren(...entries.map(([id, entry]) => this.historyItem(id, entry)));
    if (!entries.length) {
      this.historyList.append(el("li", { className: "empty", textContent: "No runs yet" }));
    }
  }

  queueItem([number, promptId, prompt], running) {
    const item = el("li", { className: `queue-item ${running ? "running" : "pending"}` }, [
      el("span", { className: "item-status", textContent: running ? "running" : `#${number}` }),
      el("span", { className: "item-detail", textContent: nodeCount(prompt), title: promptId }),
      el("button", { className: "delete-item", textContent: running ? "Stop" : "×",
        title: running ? "Stop this prompt" : "Remove from the queue" }),
    ]);
    item.dataset.promptId = promptId;
    return item;
  }

  historyItem(promptId, entry) {
    const status = entry.status?.status_str ?? "unknown";
    const time = finishedAt(entry);
    const thumbs = outputFiles(entry).slice(0, 8).map((file) => {
      const url = this.app.api.viewURL(file);
      let media = el("span", { className: "file-name", textContent: file.filename });
      if (IMAGE_FILE.test(file.filename)) {
        media = el("img", { src: url, alt: file.filename, loading: "lazy" });
      } else if (VIDEO_FILE.test(file.filename)) {
        media = el("video", { src: url, muted: true, preload: "metadata" }); // its first frame
      }
      return el("a", { href: url, target: "_blank", title: file.filename, className: "thumb" },
        [media]);
    });
    const item = el("li", { className: `history-item status-${status}` }, [
      el("div", { className: "item-line" }, [
        el("span", { className: "item-status", textContent: status }),
        el("time", { textContent: time ? time.toLocaleTimeString() : "",
          dateTime: time ? time.toISOString() : "" }),
        el("button", { className: "open-workflow", textContent: "Open",
          title: "Open this run's workflow in the canvas" }),
        el("button", { className: "delete-item", textContent: "×",
          title: "Remove from the history" }),
      ]),
      el("div", { className: "thumbs" }, thumbs),
    ]);
    item.dataset.promptId = promptId;
    return item;
  }

  async onClick(event) {
    const button = event.target.closest("button");
    const item = event.target.closest("[data-prompt-id]");
    if (!button || !item) return;
    const { api } = this.app, id = item.dataset.promptId;
    if (button.classList.contains("open-workflow")) {
      await this.openRun(id);
    } else if (button.classList.contains("delete-item")) {
      if (item.classList.contains("running")) this.edit(api.post("/interrupt", { prompt_id: id }));
      else if (item.classList.contains("queue-item")) this.edit(api.editQueue({ delete: [id] }));
      else this.edit(api.editHistory({ delete: [id] }));
    }
  }

  async openRun(promptId) {
    try {
      const entry = (await this.app.api.getHistoryItem(promptId))[promptId];
      const workflow = entry && workflowOfRun(entry);
      if (!workflow) throw new Error("the run is no longer in the history");
      await this.app.loadWorkflow(workflow);
    } catch (error) {
      this.app.showToast(`Could not open that run: ${error.message}`, "error");
    }
  }
}

export async function setup(app) {
  loadPanelStyles();
  const panel = new QueuePanel(app);
  app.queuePanel = panel;
  app.addMenuButton({ id: "queue-panel-button", label: "History", title: "Queue and history (Q)",
    onClick: () => panel.toggle() });
  for (const type of REFRESH_EVENTS) app.api.addEventListener(type, () => panel.scheduleRefresh());
  window.addEventListener("keydown", (event) => {
    if (event.key.toLowerCase() !== "q" || event.ctrlKey || event.metaKey || event.altKey ||
        isTyping(event)) return;
    event.preventDefault();
    panel.toggle();
  });
}
