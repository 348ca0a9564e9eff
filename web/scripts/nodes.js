// One litegraph node type per /object_info entry: sockets for the inputs that are not widgets,
// widgets for the others (widgets.js), outputs with their names and types, ComfyUI's titles,
// categories and "Node name for S&R" property.

import { widgetInputs } from "./convert.js";
import { inputSpecs, isWidget, uploadKind } from "./specs.js";
import { registerTypeColors } from "./types.js";
import {
  addLayoutWidgets, hasFileCombos, showInputImage, syncConvertedWidgets, updateCombos,
  widgetMenuOptions,
} from "./widgets.js";

const MIN_NODE_WIDTH = 240;
const MAX_AUTO_WIDTH = 480;

/** A width at which each widget's label and value fit side by side (litegraph's is fixed). */
function widgetWidth(node) {
  const chars = (node.widgets || []).map((w) => String(w.label ?? w.name).length
    + (w.type === "customtext" ? 0 : String(w.value ?? "").length));
  return Math.min(MAX_AUTO_WIDTH, Math.max(MIN_NODE_WIDTH, Math.max(0, ...chars) * 6.5 + 90));
}

/** Every socket type a node type uses (for colours). */
function typesOf(info) {
  const types = new Set(info.output || []);
  for (const spec of inputSpecs(info).values()) {
    if (spec.section !== "hidden") types.add(spec.type);
  }
  return types;
}

/** The node info for a class as currently known (a refresh may have changed its combos). */
const infoOf = (app, type, fallback) => app.objectInfo[type] ?? fallback;

/**
 * A workflow saved with another widget layout (an older Kinema or ComfyUI version) gets its
 * values by name, read the way the converter reads them; litegraph assigned them by position.
 */
function remapValues(node, info, values) {
  if (!Array.isArray(values) || values.length === node.widgets?.length) return;
  const byName = widgetInputs(info, values);
  for (const w of node.widgets || []) {
    w.value = w.kinemaSpec && Object.hasOwn(byName, w.name) ? byName[w.name] : w.kinemaDefault;
  }
}

function makeNodeClass(app, name, info) {
  class KinemaNode extends LGraphNode {
    constructor(title) {
      super(title);
      const current = infoOf(app, name, info);
      this.serialize_widgets = true;
      this.properties["Node name for S&R"] = name;
      for (const spec of inputSpecs(current).values()) {
        if (spec.section !== "hidden" && !isWidget(spec)) this.addInput(spec.name, spec.type);
      }
      (current.output || []).forEach((type, i) => {
        const shape = current.output_is_list?.[i] ? LiteGraph.GRID_SHAPE : undefined;
        this.addOutput(current.output_name?.[i] ?? type, type, shape ? { shape } : undefined);
      });
      addLayoutWidgets(app, this, current);
      this.comfyClass = name; // ComfyUI extensions identify nodes by it
      this.setSize([Math.max(this.size[0], widgetWidth(this)), this.computeSize()[1]]);
    }

    onNodeCreated() {
      app.runHookSync("nodeCreated", this, app);
      // File lists (loaders' combos) change while the page is open: ask for the current one.
      if (hasFileCombos(infoOf(app, name, info))) {
        app.api.getNodeInfo(name).then((fresh) => {
          if (!fresh) return;
          app.objectInfo[name] = fresh;
          updateCombos(app, this, fresh);
        }).catch(() => { /* offline: the list from page load stays */ });
      }
    }

    onConfigure(data) {
      syncConvertedWidgets(this);
      remapValues(this, infoOf(app, name, info), data.widgets_values);
      for (const w of this.widgets || []) {
        if (w.kinemaSpec && uploadKind(w.kinemaSpec) === "image") showInputImage(app, this, w);
      }
    }

    getExtraMenuOptions() {
      return widgetMenuOptions(app, this);
    }
  }
  KinemaNode.title = info.display_name || name;
  KinemaNode.comfyClass = name;
  KinemaNode.nodeData = info;
  KinemaNode.desc = info.description || "";
  return KinemaNode;
}

/** Register node types for every entry not registered yet (a refresh adds new ones). */
export async function registerNodeDefs(app, objectInfo) {
  const types = new Set(["*"]);
  for (const [name, info] of Object.entries(objectInfo)) {
    typesOf(info).forEach((t) => types.add(t));
    if (LiteGraph.registered_node_types[name]) continue;
    const nodeType = makeNodeClass(app, name, info);
    await app.runHook("beforeRegisterNodeDef", nodeType, info, app);
    LiteGraph.registerNodeType(name, nodeType);
    // registerNodeType derives a category from the type's name; ComfyUI's comes from the node.
    nodeType.category = info.category || "";
    if (nodeType.title !== name) LiteGraph.registerSearchboxExtra(name, nodeType.title, {});
  }
  registerTypeColors(types, app.canvas);
}

/** The Refresh button: new node types, and every node's file lists, from /object_info. */
export async function refreshNodeDefs(app) {
  app.objectInfo = await app.api.getObjectInfo();
  await registerNodeDefs(app, app.objectInfo);
  for (const node of app.graph._nodes) updateCombos(app, node, app.objectInfo[node.type]);
}

/**
 * Double-click search over titles, type names, categories and descriptions. Litegraph's own
 * box matches type names only, so "upscale" would not find ImageScale ("Upscale Image").
 * Results are titles; the search-box extras registered above map them back to their types.
 */
export function installNodeSearch(canvas) {
  canvas.onSearchBox = (_helper, text) => {
    const query = text.trim().toLowerCase();
    // Every word must appear somewhere: "empty image" finds EmptyImage and "Empty Image".
    const words = query.split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const scored = [];
    for (const [type, ctor] of Object.entries(LiteGraph.registered_node_types)) {
      const title = String(ctor.title || type);
      const fields = [title, type, ctor.category || "", ctor.desc || ""].map((f) => f.toLowerCase());
      const hit = fields.findIndex((f) => words.every((w) => f.includes(w)));
      if (hit < 0 && !words.every((w) => fields.some((f) => f.includes(w)))) continue;
      // Title prefix first, then by the field that matched, then scattered matches.
      const rank = fields[0].startsWith(query) ? 0 : hit < 0 ? fields.length + 1 : hit + 1;
      const extra = LiteGraph.searchbox_extras[title.toLowerCase()];
      scored.push([rank, title, extra?.type === type ? title : type]);
    }
    scored.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]));
    return scored.slice(0, 40).map(([, , label]) => label);
  };
}
