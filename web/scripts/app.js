// The canvas application: one `app` (also window.kinema and window.app, as ComfyUI extensions
// expect) holding the API client, the graph, the canvas and the node definitions.
//
// Start-up order matters: plugin extensions load before node types are registered (their
// beforeRegisterNodeDef hooks patch the types), feature modules set up before the default
// workflow opens (one of them may restore the autosaved workflow instead).

import { api } from "./api.js";
import { graphToPrompt as convertGraph, WorkflowError } from "./convert.js";
import { installDomLayer } from "./dom.js";
import { clearErrors, installExecution, showPromptErrors } from "./execution.js";
import { registerFrontendNodes } from "./frontend_nodes.js";
import { installNodeSearch, refreshNodeDefs, registerNodeDefs } from "./nodes.js";
import { installConnectionRule } from "./types.js";
import { addMenuButton, installTooltips, showToast } from "./ui.js";
import { applyControls } from "./widgets.js";

// The first screen: a test clip → interpolate → upscale → MP4 that needs no files or weights,
// so pressing Queue on a fresh clone shows a video playing on its node.
export const DEFAULT_WORKFLOW = "video_basics.json";
const FEATURE_MODULES = ["./workflow_io.js", "./undo.js", "./panels.js", "./help.js",
  "./plugins.js"];
const API_IDS_KEY = "kinema_api_ids"; // canvas extra: canvas node id -> API id
const MIN_FIT_SCALE = 0.65; // litegraph drops text below 0.6
const FIT_MARGIN = 40;

class KinemaApp extends EventTarget {
  constructor() {
    super();
    this.api = api;
    this.graph = null;
    this.canvas = null;
    this.objectInfo = {};
    this.extensions = [];
    this.loading = false; // configuring a workflow: not a user edit
    this.workflowLoaded = false;
    this.isSetUp = false;
    this.ownPrompts = new Set(); // prompt ids this page queued: the only runs it draws
  }

  async setup() {
    installConnectionRule();
    LiteGraph.release_link_on_empty_shows_menu = true;
    LiteGraph.alt_drag_do_clone_nodes = true;
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(document.getElementById("graph-canvas"), this.graph);
    this.canvas.clear_background_color = "#16181d";
    this.canvas.show_info = false;
    this.canvas.render_canvas_border = false;
    this.fitCanvas();
    window.addEventListener("resize", () => this.fitCanvas());
    installDomLayer(this.canvas);
    installNodeSearch(this.canvas);
    installTooltips(this.canvas);
    installExecution(this);
    this.watchGraph();
    document.getElementById("refresh-button").addEventListener("click", () => this.refresh());
    this.api.connect();

    this.objectInfo = await this.api.getObjectInfo();
    await this.loadPluginExtensions();
    await this.runHook("init", this);
    registerFrontendNodes(this);
    await registerNodeDefs(this, this.objectInfo);
    await this.loadFeatures();
    if (!this.workflowLoaded) {
      // ?workflow=NAME opens another example first (links to one; the browser tests use it).
      const name = new URLSearchParams(location.search).get("workflow") || DEFAULT_WORKFLOW;
      await this.loadWorkflow(await this.api.getWorkflow(name));
    }
    await this.runHook("setup", this);
    this.isSetUp = true;
  }

  fitCanvas() {
    this.canvas.resize(window.innerWidth, window.innerHeight);
    this.canvas.setDirty(true, true);
  }

  /** Report user edits as "graphChanged" (autosave and undo listen); loading is not one. */
  graphChanged(reason) {
    if (this.loading) return;
    this.dispatchEvent(new CustomEvent("graphChanged", { detail: { reason } }));
  }

  watchGraph() {
    this.graph.onNodeAdded = () => this.graphChanged("nodeAdded");
    this.graph.onNodeRemoved = () => this.graphChanged("nodeRemoved");
    this.graph.onConnectionChange = () => this.graphChanged("link");
    this.graph.onAfterChange = () => this.graphChanged("edit");
    this.canvas.onNodeMoved = () => this.graphChanged("moved");
    // Whoever configures the graph (opening a workflow, undo), it is not a user edit, and the
    // nodes that need the whole graph (PrimitiveNode) finish their set-up afterwards.
    const configure = this.graph.configure;
    this.graph.configure = (data, keepOld) => {
      this.loading = true;
      try {
        return configure.call(this.graph, data, keepOld);
      } finally {
        this.loading = false;
      }
    };
    this.graph.onConfigure = () => {
      for (const node of this.graph._nodes) {
        node.onAfterGraphConfigured?.();
        if (node.has_errors) node.color = "#a33"; // a placeholder for a missing node type
        this.runHookSync("loadedGraphNode", node, this);
      }
    };
  }

  // -- extensions -------------------------------------------------------------------------------

  /** ComfyUI's extension API: {name, init, setup, beforeRegisterNodeDef, nodeCreated, ...}. */
  registerExtension(extension) {
    if (!extension?.name) throw new Error("An extension needs a name");
    if (this.extensions.some((e) => e.name === extension.name)) {
      throw new Error(`An extension named ${extension.name} is already registered`);
    }
    this.extensions.push(extension);
    if (this.isSetUp) this.callHook(extension, "setup", [this]); // registered late
  }

  callHook(extension, hook, args) {
    try {
      return extension[hook]?.(...args);
    } catch (err) {
      this.extensionFailed(extension, hook, err);
      return undefined;
    }
  }

  extensionFailed(extension, hook, err) {
    console.error(`Extension ${extension.name} failed in ${hook}:`, err);
    showToast(`Extension ${extension.name} failed in ${hook}: ${err.message}`, "error");
  }

  async runHook(hook, ...args) {
    for (const extension of this.extensions) {
      try {
        await this.callHook(extension, hook, args);
      } catch (err) {
        this.extensionFailed(extension, hook, err);
      }
    }
  }

  /** For hooks litegraph calls synchronously (nodeCreated, loadedGraphNode). */
  runHookSync(hook, ...args) {
    for (const extension of this.extensions) this.callHook(extension, hook, args);
  }

  async loadPluginExtensions() {
    let urls = [];
    try {
      urls = await this.api.getExtensions();
    } catch (err) {
      showToast(`Could not list plugin extensions: ${err.message}`, "warn");
    }
    for (const url of urls) {
      try {
        await import(url);
      } catch (err) {
        console.error(`Extension ${url} failed to load:`, err);
        showToast(`Extension ${url} failed to load: ${err.message}`, "error");
      }
    }
  }

  /** Kinema's optional feature modules, each exporting setup(app); absent ones are skipped. */
  async loadFeatures() {
    const urls = FEATURE_MODULES.map((path) => new URL(path, import.meta.url).href);
    // HEAD first: a failed import() would log an error for a feature that is simply absent.
    const present = await Promise.all(urls.map((url) => fetch(url, { method: "HEAD" })
      .then((res) => res.ok, () => false)));
    for (const [i, url] of urls.entries()) {
      if (!present[i]) continue;
      try {
        const module = await import(url);
        await module.setup?.(this);
      } catch (err) {
        console.error(`Feature ${url} failed:`, err);
        showToast(`Feature ${FEATURE_MODULES[i]} failed: ${err.message}`, "error");
      }
    }
  }

  // -- workflows --------------------------------------------------------------------------------

  /**
   * Open a workflow: canvas JSON directly, an API-format prompt laid out by the server.
   * Unknown node types become placeholders (kept as saved) and are named in a toast.
   * Resolves true when the workflow is open, false (with a toast saying why) otherwise.
   */
  async loadWorkflow(data) {
    let workflow;
    try {
      workflow = typeof data === "string" ? JSON.parse(data) : data;
      if (!Array.isArray(workflow?.nodes)) workflow = await this.api.apiToCanvas(workflow);
    } catch (err) {
      showToast(`Cannot open this workflow: ${err.message}`, "error");
      return false;
    }
    workflow = structuredClone(workflow); // graph.configure rewrites what it is given
    const missing = [...new Set(workflow.nodes.map((n) => n?.type)
      .filter((type) => type && !LiteGraph.registered_node_types[type]))];
    try {
      this.graph.configure(workflow);
    } catch (err) {
      showToast(`Cannot open this workflow: ${err.message}`, "error");
      return false;
    }
    this.showWorkflowView(workflow.extra?.ds);
    if (missing.length) {
      showToast(`Missing node types (kept as placeholders): ${missing.join(", ")}`, "warn");
    }
    this.workflowLoaded = true;
    this.dispatchEvent(new CustomEvent("workflowLoaded", { detail: { workflow, missing } }));
    return true;
  }

  /** The saved view, or one that fits every node on the screen. */
  showWorkflowView(ds) {
    const view = this.canvas.ds;
    if (ds?.offset && ds.scale) {
      view.scale = ds.scale;
      view.offset = [...ds.offset];
    } else if (this.graph._nodes.length) {
      const box = [Infinity, Infinity, -Infinity, -Infinity];
      for (const node of this.graph._nodes) {
        box[0] = Math.min(box[0], node.pos[0]);
        box[1] = Math.min(box[1], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
        box[2] = Math.max(box[2], node.pos[0] + node.size[0]);
        box[3] = Math.max(box[3], node.pos[1] + node.size[1]);
      }
      // The menu covers the right edge. Text stays readable: below MIN_FIT_SCALE the view
      // starts at the top-left node instead of showing everything.
      const menu = document.getElementById("kinema-menu").getBoundingClientRect();
      const w = this.canvas.canvas.width - menu.width - 2 * FIT_MARGIN;
      const h = this.canvas.canvas.height - 2 * FIT_MARGIN;
      const [bw, bh] = [box[2] - box[0], box[3] - box[1]];
      view.scale = Math.max(MIN_FIT_SCALE, Math.min(1, w / bw, h / bh));
      view.offset = [FIT_MARGIN / view.scale - box[0] + Math.max(0, (w / view.scale - bw) / 2),
                     FIT_MARGIN / view.scale - box[1] + Math.max(0, (h / view.scale - bh) / 2)];
    }
    this.canvas.setDirty(true, true);
  }

  /** The canvas workflow as JSON (litegraph's shape, the view in extra.ds). */
  serialize() {
    const workflow = this.graph.serialize();
    const { scale, offset } = this.canvas.ds;
    workflow.extra = { ...workflow.extra, ds: { scale, offset: [...offset] } };
    // Litegraph keeps positions and sizes in Float32Arrays (a node's pos in one of 10!),
    // which JSON would write as objects: write them as plain [x, y] lists.
    return JSON.parse(JSON.stringify(workflow, (key, value) => {
      if (!ArrayBuffer.isView(value)) return value;
      const list = Array.from(value);
      return key === "pos" ? list.slice(0, 2) : list;
    }));
  }

  /**
   * {workflow, output}: the canvas and the API prompt it runs as. Given a serialised workflow
   * (and optionally an object_info), it is convert.js's pure graphToPrompt: {output}.
   */
  graphToPrompt(workflow, objectInfo = this.objectInfo) {
    if (workflow !== undefined) return convertGraph(workflow, objectInfo);
    workflow = this.serialize();
    return { workflow, output: convertGraph(workflow, this.objectInfo).output };
  }

  /** The canvas node an API node id names (ids that are not numbers are mapped in extra). */
  nodeForApiId(id) {
    if (id === null || id === undefined) return null;
    const ids = this.graph.extra?.[API_IDS_KEY] || {};
    const canvasId = Object.keys(ids).find((key) => String(ids[key]) === String(id));
    return this.graph.getNodeById(canvasId ?? id) ?? null;
  }

  /**
   * Queue the graph batchCount times (front: ahead of the queue). After each queued prompt the
   * seed-like widgets move on (control_after_generate), so each run gets its own values.
   * Resolves to the server's answers; a refused prompt shows its errors and stops the batch.
   */
  async queuePrompt({ batchCount = 1, front = false } = {}) {
    clearErrors(this);
    const answers = [];
    for (let i = 0; i < batchCount; i++) {
      let prompt;
      try {
        prompt = this.graphToPrompt();
      } catch (err) {
        if (!(err instanceof WorkflowError)) throw err;
        showToast(`${err.error.message} ${err.error.details}`, "error");
        return answers;
      }
      // The id is ours before the request leaves: the run's first events can reach the
      // websocket before POST /prompt answers, and they must already count as this page's.
      const promptId = newPromptId();
      this.ownPrompts.add(promptId);
      let res;
      try {
        res = await this.api.queuePrompt({
          prompt: prompt.output, client_id: this.api.clientId, front, prompt_id: promptId,
          extra_data: { extra_pnginfo: { workflow: prompt.workflow } },
        });
      } catch (err) {
        showToast(err.message, "error");
        return answers;
      }
      if (!res.ok) {
        showPromptErrors(this, res.body);
        return answers;
      }
      answers.push(res.body);
      const moved = this.graph._nodes.map((node) => applyControls(node)).some(Boolean);
      if (moved) {
        this.canvas.setDirty(true, false);
        this.graphChanged("control");
      }
    }
    return answers;
  }

  /** The Refresh button: new node types and current file lists from the server. */
  async refresh() {
    try {
      await refreshNodeDefs(this);
      showToast("Node definitions and file lists refreshed", "success");
    } catch (err) {
      showToast(`Refresh failed: ${err.message}`, "error");
    }
  }

  addMenuButton(options) {
    return addMenuButton(options);
  }

  showToast(message, kind = "info") {
    return showToast(message, kind);
  }
}

export const app = new KinemaApp();
window.kinema = app;
window.app = app;
app.ready = app.setup().catch((err) => {
  console.error("Kinema failed to start:", err);
  showToast(`Kinema failed to start: ${err.message}`, "error");
});

/** A random UUID; crypto.randomUUID exists only on secure origins (not http on a LAN IP). */
function newPromptId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
