// Canvas-only node types, as in ComfyUI: Reroute (a bend in a link), Note (text, never runs)
// and PrimitiveNode (one value feeding widget inputs). They never reach the server: the
// converter (convert.js, engine/workflow.py) resolves them away.

import { addTextareaWidget } from "./dom.js";
import { defaultValue, inputSpecs } from "./specs.js";
import { typesCompatible } from "./types.js";
import { addControlWidget, addValueWidget } from "./widgets.js";

const PRIMITIVE_OUTPUT = "connect to widget input";

// -- Reroute: takes the type of what feeds it, and hands it on ------------------------------------

function upstreamType(node, seen = new Set([node])) {
  const link = node.graph?.links[node.inputs[0]?.link];
  const origin = link && node.graph.getNodeById(link.origin_id);
  if (!origin) return null;
  if (origin.type === "Reroute" && !seen.has(origin)) {
    seen.add(origin);
    return upstreamType(origin, seen);
  }
  return origin.outputs?.[link.origin_slot]?.type ?? null;
}

function setRerouteType(node, type, seen = new Set()) {
  if (seen.has(node)) return;
  seen.add(node);
  node.outputs[0].type = type;
  for (const id of [...(node.outputs[0].links || [])]) {
    const link = node.graph.links[id];
    if (!link) continue;
    const target = node.graph.getNodeById(link.target_id);
    if (target?.type === "Reroute") {
      link.type = type; // the link takes the type's colour
      setRerouteType(target, type, seen);
    } else if (target && !typesCompatible(type, target.inputs[link.target_slot]?.type)) {
      target.disconnectInput(link.target_slot); // it no longer fits what now flows here
    } else {
      link.type = type;
    }
  }
}

function makeReroute(app) {
  class Reroute extends LGraphNode {
    constructor(title) {
      super(title);
      this.properties = { showOutputText: false, horizontal: false };
      this.addInput("", "*");
      this.addOutput("", "*");
      this.isVirtualNode = true;
      this.size = this.computeSize();
    }

    computeSize() {
      return [75, 26];
    }

    onConnectionsChange() {
      // While a workflow loads, its saved types stand (the upstream nodes may not exist yet).
      if (!app.loading && this.graph) setRerouteType(this, upstreamType(this) ?? "*");
    }
  }
  Reroute.title = "Reroute";
  Reroute.title_mode = LiteGraph.NO_TITLE;
  Reroute.collapsable = false;
  return Reroute;
}

// -- Note ----------------------------------------------------------------------------------------

function makeNote(app, title) {
  class Note extends LGraphNode {
    constructor(t) {
      super(t);
      this.color = "#432";
      this.bgcolor = "#653";
      this.properties = { text: "" };
      this.serialize_widgets = true;
      this.isVirtualNode = true;
      addTextareaWidget(this, "text", "", { onInput: () => app.graphChanged("widget"),
                                            placeholder: "A note (never runs)" });
      this.size = [400, 120];
    }
  }
  Note.title = title;
  return Note;
}

// -- PrimitiveNode: becomes the widget of the first input it feeds ------------------------------

function primitiveTarget(node) {
  const link = node.graph?.links[node.outputs[0].links?.[0]];
  const target = link && node.graph.getNodeById(link.target_id);
  const input = target?.inputs?.[link.target_slot];
  return input?.widget ? { node: target, input } : null;
}

function clearPrimitive(node) {
  for (const w of node.widgets || []) w.onRemove?.();
  node.widgets = [];
  delete node.kinemaFor;
}

/** Build the primitive's widget for the input it feeds; `saved` are its saved values. */
function rebuildPrimitive(app, node, saved) {
  const target = primitiveTarget(node);
  if (!target) {
    if (!node.outputs[0].links?.length) {
      clearPrimitive(node);
      Object.assign(node.outputs[0], { type: "*", name: PRIMITIVE_OUTPUT });
      node.setSize(node.computeSize());
    }
    return;
  }
  const spec = inputSpecs(app.objectInfo[target.node.type]).get(target.input.widget.name);
  const key = `${target.input.type}:${spec?.name}`;
  if (!spec || node.kinemaFor === key) return;
  const shown = target.node.widgets?.find((w) => w.name === spec.name);
  clearPrimitive(node);
  const w = addValueWidget(app, node, spec, saved?.[0] ?? shown?.value ?? defaultValue(spec));
  if (w.type === "number" || w.type === "combo") {
    const control = addControlWidget(app, node, w);
    if (typeof saved?.[1] === "string") control.value = saved[1];
  }
  node.kinemaFor = key;
  Object.assign(node.outputs[0], { type: target.input.type, name: target.input.type });
  node.setSize([Math.max(node.size[0], 240), node.computeSize()[1]]);
}

function makePrimitive(app) {
  class PrimitiveNode extends LGraphNode {
    constructor(title) {
      super(title);
      this.addOutput(PRIMITIVE_OUTPUT, "*");
      this.serialize_widgets = true;
      this.isVirtualNode = true;
    }

    onConnectOutput(_slot, _type, input) {
      return Boolean(input.widget); // only widget inputs take a primitive's value
    }

    onConnectionsChange(side) {
      if (side === LiteGraph.OUTPUT && !app.loading && this.graph) rebuildPrimitive(app, this);
    }

    onAfterGraphConfigured() {
      rebuildPrimitive(app, this, this.widgets_values);
    }
  }
  PrimitiveNode.title = "Primitive";
  return PrimitiveNode;
}

/** Register the canvas-only node types under "utils". */
export function registerFrontendNodes(app) {
  const types = {
    Reroute: makeReroute(app), Note: makeNote(app, "Note"),
    MarkdownNote: makeNote(app, "Markdown Note"), PrimitiveNode: makePrimitive(app),
  };
  for (const [name, nodeType] of Object.entries(types)) {
    LiteGraph.registerNodeType(name, nodeType);
    nodeType.category = "utils";
    if (nodeType.title !== name) LiteGraph.registerSearchboxExtra(name, nodeType.title, {});
  }
}
