// Running a graph and seeing it run: the Queue/Interrupt controls, node states from the
// websocket (running with a progress bar, cached, done, error), errors on the nodes and inputs
// they name, output and live previews.
//
// Node state for tests and other features: node.kinemaState ("running" | "cached" | "done" |
// "error" | undefined), node.kinemaProgress (0..1), node.kinemaErrors ([{type, message,
// details, input_name}]), node.kinemaPreviewUrls (the URLs shown).

import { clearLivePreview, drawPreviews, showImages, showLivePreview, showMedia } from "./previews.js";

const OUTLINE = { running: "#3fd07b", cached: "#6c8ebf", error: "#ff4d4f" };
const MODE_NEVER = 2; // muted: does not run, nor what only it feeds
const MODE_BYPASS = 4; // runs as if its matching inputs fed its outputs
const MODE_TINT = { [MODE_NEVER]: "rgba(16, 18, 22, 0.6)", [MODE_BYPASS]: "rgba(170, 70, 220, 0.3)" };
const ERROR_TEXT = "#ff8a8a";
const MAX_ERROR_LINES = 6;

/** Clear what a previous run left on the nodes (at the start of the next run). */
function resetStates(app) {
  for (const node of app.graph._nodes) {
    delete node.kinemaState;
    delete node.kinemaProgress;
    delete node.kinemaErrors;
    clearLivePreview(node);
  }
  app.canvas.setDirty(true, true);
}

/** Clear the errors of a refused prompt or failed run (before queueing again). */
export function clearErrors(app) {
  for (const node of app.graph._nodes) {
    if (node.kinemaState !== "error") continue;
    delete node.kinemaState;
    delete node.kinemaErrors;
  }
  app.canvas.setDirty(true, true);
}

function setState(node, state) {
  if (!node) return;
  node.kinemaState = state;
  if (state !== "running") delete node.kinemaProgress;
  node.setDirtyCanvas(true, true);
}

/** Show a node's `executed` output: images drawn in the node, videos and GIFs playing. */
function showOutputs(app, node, output) {
  const media = [...(output?.gifs || []), ...(output?.videos || [])];
  if (media.length) {
    const item = media[0];
    showMedia(node, { url: app.api.viewURL(item), format: item.format || "",
                      filename: item.filename || "" });
  } else if (output?.images?.length) {
    showImages(node, output.images.map((image) => app.api.viewURL(image)));
  }
  node.onExecuted?.(output); // ComfyUI extensions hook here
}

/** A refused prompt (400): each node_errors entry on its node and input, the summary in a toast. */
export function showPromptErrors(app, body) {
  for (const [id, entry] of Object.entries(body?.node_errors || {})) {
    const node = app.nodeForApiId(id);
    if (!node) continue;
    node.kinemaErrors = (entry.errors || []).map((e) => ({
      type: e.type, message: e.message, details: e.details ?? "",
      input_name: e.extra_info?.input_name ?? null,
    }));
    setState(node, "error");
  }
  const error = body?.error;
  const message = error ? `${error.message}${error.details ? `: ${error.details}` : ""}`
    : "The server refused the prompt";
  app.showToast(message, "error");
}

function listen(app) {
  const { api } = app;
  let running = null; // the API id of the running node
  // Prompts queued without a client_id (scripts) are broadcast to every page; their node ids
  // mean nothing in this graph, so only this page's own prompts are drawn.
  const on = (type, handler) => api.addEventListener(type, (event) => {
    const data = event.detail ?? {};
    if (data.prompt_id && !app.ownPrompts.has(data.prompt_id)) return;
    handler(data);
  });

  on("status", (data) => {
    const remaining = data.status?.exec_info?.queue_remaining ?? 0;
    document.getElementById("queue-status").textContent = `${remaining} queued`;
  });
  on("execution_start", () => {
    running = null;
    resetStates(app);
  });
  on("execution_cached", (data) => {
    for (const id of data.nodes || []) setState(app.nodeForApiId(id), "cached");
  });
  on("executing", (data) => {
    const previous = running && app.nodeForApiId(running);
    if (previous?.kinemaState === "running") setState(previous, "done");
    running = data.node ?? null;
    const node = running && app.nodeForApiId(running);
    if (node) {
      setState(node, "running");
      node.kinemaProgress = 0;
    }
  });
  on("progress", (data) => {
    const node = app.nodeForApiId(data.node ?? running);
    if (!node || !data.max) return;
    node.kinemaProgress = Math.min(1, data.value / data.max);
    node.setDirtyCanvas(true, false);
  });
  on("executed", (data) => {
    const node = app.nodeForApiId(data.node);
    if (!node) return;
    showOutputs(app, node, data.output);
    if (node.kinemaState !== "running" && node.kinemaState !== "cached") setState(node, "done");
  });
  on("execution_error", (data) => {
    const node = app.nodeForApiId(data.node_id);
    const traceback = Array.isArray(data.traceback) ? data.traceback.join("") : data.traceback;
    if (node) {
      node.kinemaErrors = [{ type: data.exception_type || "exception",
                             message: data.exception_message || "failed",
                             details: traceback || "", input_name: null }];
      setState(node, "error");
    }
    running = null;
    const who = data.node_type ? `${data.node_type} (#${data.node_id})` : "The prompt";
    app.showToast(`${who} failed: ${data.exception_message}`, "error");
  });
  on("execution_interrupted", (data) => {
    const node = app.nodeForApiId(data.node_id ?? running);
    if (node?.kinemaState === "running") setState(node, undefined);
    running = null;
    app.showToast("Interrupted", "warn");
  });
  api.addEventListener("b_preview", (event) => {
    const node = running && app.nodeForApiId(running);
    if (node) showLivePreview(node, event.detail);
  });
}

// -- drawing -----------------------------------------------------------------------------------

function wrapLines(ctx, text, width) {
  const lines = [];
  for (const paragraph of String(text).split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      const next = line ? `${line} ${word}` : word;
      if (line && ctx.measureText(next).width > width) {
        lines.push(line);
        line = word;
      } else {
        line = next;
      }
    }
    lines.push(line);
  }
  return lines;
}

/** Red marks on the inputs and widgets an error names, and the messages under the node. */
function drawErrors(node, ctx) {
  const width = Math.max(node.size[0], 260);
  ctx.font = "12px sans-serif";
  const lines = [];
  for (const error of node.kinemaErrors) {
    const slot = (node.inputs || []).findIndex((input) => input.name === error.input_name);
    const widget = (node.widgets || []).find((w) => w.name === error.input_name
                                                     && w.type !== "converted-widget");
    ctx.strokeStyle = OUTLINE.error;
    ctx.lineWidth = 2;
    if (slot >= 0 && !node.flags.collapsed) {
      const pos = node.getConnectionPos(true, slot);
      ctx.beginPath();
      ctx.arc(pos[0] - node.pos[0], pos[1] - node.pos[1], 7, 0, Math.PI * 2);
      ctx.stroke();
    } else if (widget?.last_y !== undefined && !node.flags.collapsed) {
      ctx.strokeRect(12, widget.last_y - 1, node.size[0] - 24, LiteGraph.NODE_WIDGET_HEIGHT + 2);
    }
    const where = error.input_name ? `${error.input_name}: ` : "";
    const details = error.details && !error.details.includes("\n") ? ` (${error.details})` : "";
    lines.push(...wrapLines(ctx, `${where}${error.message}${details}`, width - 12));
  }
  const shown = lines.slice(0, MAX_ERROR_LINES);
  const top = (node.flags.collapsed ? 0 : node.size[1]) + 8;
  ctx.fillStyle = "rgba(40, 10, 12, 0.92)";
  ctx.fillRect(0, top, width, shown.length * 16 + 8);
  ctx.fillStyle = ERROR_TEXT;
  ctx.textAlign = "left";
  shown.forEach((line, i) => ctx.fillText(line, 6, top + 16 + i * 16));
}

/** Everything this module draws on a node, after litegraph drew it (node-local coords). */
function decorate(node, ctx) {
  drawPreviews(node, ctx);
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const width = node.flags.collapsed ? (node._collapsed_width || LiteGraph.NODE_COLLAPSED_WIDTH)
    : node.size[0];
  const height = node.flags.collapsed ? 0 : node.size[1];
  if (MODE_TINT[node.mode]) {
    ctx.fillStyle = MODE_TINT[node.mode];
    ctx.beginPath();
    ctx.roundRect(0, -title, width, height + title, 8);
    ctx.fill();
  }
  if (node.has_errors && !node.flags.collapsed) { // litegraph's placeholder for a missing type
    ctx.fillStyle = "#fff";
    ctx.font = "13px sans-serif";
    ctx.textAlign = "left";
    ctx.fillText(`Missing node type: ${node.type}`, 10, height - 10);
  }
  const state = node.kinemaState;
  if (!state || state === "done") return;
  ctx.save();
  if (state === "cached") ctx.setLineDash([6, 4]);
  ctx.strokeStyle = OUTLINE[state];
  ctx.lineWidth = state === "cached" ? 1.5 : 3;
  ctx.beginPath();
  ctx.roundRect(-4, -title - 4, width + 8, height + title + 8, 10);
  ctx.stroke();
  ctx.setLineDash([]);
  if (state === "running" && node.kinemaProgress > 0) {
    ctx.fillStyle = OUTLINE.running;
    ctx.fillRect(0, -3, width * node.kinemaProgress, 3);
  }
  if (state === "cached") {
    ctx.font = "11px sans-serif";
    ctx.textAlign = "right";
    ctx.fillStyle = OUTLINE.cached;
    ctx.fillText("cached", width - 8, -title + 19);
  }
  if (node.kinemaErrors?.length) drawErrors(node, ctx);
  ctx.restore();
}

// -- controls ------------------------------------------------------------------------------------

/** Mode menu with ComfyUI's Bypass (4), and Ctrl+M (mute) / Ctrl+B (bypass) on the selection. */
function installModes(app) {
  LiteGraph.NODE_MODES = ["Always", "On Event", "Never", "On Trigger", "Bypass"];
  const changeMode = LGraphNode.prototype.changeMode;
  LGraphNode.prototype.changeMode = function (mode) {
    let changed = true;
    if (mode === MODE_BYPASS) this.mode = mode; // litegraph refuses modes it does not know
    else changed = changeMode.call(this, mode);
    this.setDirtyCanvas(true, true);
    app.graphChanged("mode");
    return changed;
  };
  window.addEventListener("keydown", (event) => {
    const key = event.key.toLowerCase();
    if (!(event.ctrlKey || event.metaKey) || (key !== "m" && key !== "b")) return;
    if (event.target.closest?.("input, textarea, select, [contenteditable]")) return;
    const nodes = Object.values(app.canvas.selected_nodes || {});
    if (!nodes.length) return;
    event.preventDefault();
    const mode = key === "m" ? MODE_NEVER : MODE_BYPASS;
    const all = nodes.every((node) => node.mode === mode);
    for (const node of nodes) node.changeMode(all ? LiteGraph.ALWAYS : mode);
  });
}

function batchCount() {
  const input = document.getElementById("batch-count");
  const count = Math.round(Number(input.value));
  const clamped = Math.min(100, Math.max(1, Number.isFinite(count) ? count : 1));
  input.value = clamped;
  return clamped;
}

/** Wire the Queue and Interrupt controls, Ctrl+Enter, the websocket events and the drawing. */
export function installExecution(app) {
  listen(app);
  installModes(app);
  const drawNode = app.canvas.drawNode;
  app.canvas.drawNode = function (node, ctx) {
    drawNode.call(this, node, ctx);
    decorate(node, ctx);
  };
  const queue = (front) => app.queuePrompt({ batchCount: batchCount(), front });
  document.getElementById("queue-button")
    .addEventListener("click", (event) => queue(event.shiftKey));
  document.getElementById("interrupt-button").addEventListener("click", () => app.api.interrupt());
  window.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      queue(event.shiftKey); // Ctrl+Shift+Enter: to the front of the queue
    }
  }, true);
}
