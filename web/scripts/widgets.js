// Widgets from INPUT_TYPES, built in the order engine/workflow.py reads widgets_values back:
// each widget input in declaration order, a seed's control_after_generate right after it (and
// a controlled combo's filter), the upload button after the last required input.

import { addTextareaWidget } from "./dom.js";
import { showImages } from "./previews.js";
import { defaultValue, inputSpecs, uploadKind, widgetLayout } from "./specs.js";

const CONTROL_MODES = ["fixed", "increment", "decrement", "randomize"];
const CONVERTED = "converted-widget";
const RANDOM_LIMIT = 1125899906842624; // 2^50: randomised numbers stay exact in JS and JSON
const FILE_NAME = /\.[A-Za-z0-9]{1,5}$/;

// -- value widgets -----------------------------------------------------------------------------

function numberOptions(spec) {
  const isInt = spec.type === "INT";
  const step = Number(spec.options.step ?? (isInt ? 1 : 0.1)) || (isInt ? 1 : 0.1);
  const precision = isInt ? 0 : Math.min(10, Math.max(0, -Math.floor(Math.log10(step))));
  // Litegraph moves a number by a tenth of `step` per arrow click; ComfyUI's x10 convention.
  return { min: spec.options.min, max: spec.options.max, step: step * 10, precision,
           kinemaStep: step };
}

/** Clamp and round what litegraph's number widget produced (drags give fractions). */
function normaliseNumber(w, value) {
  const { min, max, precision } = w.options;
  let v = Number(value);
  if (!Number.isFinite(v)) v = Number(w.kinemaDefault) || 0;
  if (min !== undefined && v < min) v = min;
  if (max !== undefined && v > max) v = max;
  return precision === 0 ? Math.round(v) : Number(v.toFixed(precision));
}

/** Add the widget for one input spec (also used by PrimitiveNode); returns it. */
export function addValueWidget(app, node, spec, value = defaultValue(spec)) {
  const changed = () => app.graphChanged("widget");
  let w;
  if (spec.choices !== null || spec.type === "COMBO") {
    w = node.addWidget("combo", spec.name, value, () => {
      if (uploadKind(spec) === "image") showInputImage(app, node, w);
      changed();
    }, { values: spec.choices ?? [] });
  } else if (spec.type === "INT" || spec.type === "FLOAT") {
    w = node.addWidget("number", spec.name, value, (v) => {
      w.value = normaliseNumber(w, v);
      changed();
    }, numberOptions(spec));
  } else if (spec.type === "BOOLEAN") {
    w = node.addWidget("toggle", spec.name, Boolean(value), changed,
                       { on: spec.options.label_on, off: spec.options.label_off });
  } else if (spec.options.multiline) {
    w = addTextareaWidget(node, spec.name, value, { onInput: changed,
                                                    placeholder: spec.options.placeholder });
  } else {
    w = node.addWidget("text", spec.name, value ?? "", changed);
  }
  w.kinemaSpec = spec;
  w.kinemaDefault = value;
  return w;
}

/** The control_after_generate combo of a seed-like widget. */
export function addControlWidget(app, node, target) {
  const declared = target.kinemaSpec.options.control_after_generate;
  // ComfyUI's habit: seeds start randomised; other controlled values (a size) stay fixed.
  const initial = CONTROL_MODES.includes(declared) ? declared
    : (target.kinemaSpec.name.includes("seed") ? "randomize" : "fixed");
  const w = node.addWidget("combo", "control_after_generate", initial,
                           () => app.graphChanged("widget"), { values: CONTROL_MODES });
  w.kinemaDefault = initial;
  target.kinemaControl = w;
  return w;
}

/** Build a node's widgets from its layout (see the module comment). */
export function addLayoutWidgets(app, node, info) {
  const specs = inputSpecs(info);
  let last = null;
  for (const [kind, name] of widgetLayout(info)) {
    if (kind === "widget") {
      last = addValueWidget(app, node, specs.get(name));
    } else if (kind === "control") {
      addControlWidget(app, node, last);
    } else if (kind === "filter") {
      const w = node.addWidget("text", "control_filter_list", "", () => app.graphChanged("widget"));
      w.kinemaDefault = "";
      last.kinemaFilter = w;
    } else if (kind === "upload") {
      addUploadWidget(app, node, name);
    }
  }
}

// -- control after generate --------------------------------------------------------------------

function nextNumber(w, mode) {
  const { min = -RANDOM_LIMIT, max = RANDOM_LIMIT, kinemaStep: step = 1 } = w.options;
  if (mode === "increment") return normaliseNumber(w, w.value + step);
  if (mode === "decrement") return normaliseNumber(w, w.value - step);
  const lo = Math.max(min, -RANDOM_LIMIT);
  const hi = Math.min(max, RANDOM_LIMIT);
  return normaliseNumber(w, lo + Math.floor(Math.random() * ((hi - lo) / step + 1)) * step);
}

function nextChoice(w, mode) {
  let values = w.options.values || [];
  const filter = w.kinemaFilter?.value?.trim();
  if (filter) {
    // "/regex/" or a plain substring, as ComfyUI's filter list reads it.
    const re = /^\/(.+)\/$/.exec(filter);
    let test = (v) => String(v).toLowerCase().includes(filter.toLowerCase());
    if (re) {
      try {
        const regex = new RegExp(re[1]);
        test = (v) => regex.test(String(v));
      } catch { /* an unfinished pattern filters nothing */ }
    }
    values = values.filter(test);
  }
  if (!values.length) return w.value;
  if (mode === "randomize") return values[Math.floor(Math.random() * values.length)];
  const index = values.indexOf(w.value) + (mode === "increment" ? 1 : -1);
  return values[Math.min(Math.max(index, 0), values.length - 1)];
}

/** After a prompt is queued, move each controlled widget on (fixed, increment, ...). */
export function applyControls(node) {
  let changed = false;
  for (const w of node.widgets || []) {
    const mode = w.kinemaControl?.value;
    if (!mode || mode === "fixed" || w.type === CONVERTED) continue;
    const next = w.type === "number" ? nextNumber(w, mode) : nextChoice(w, mode);
    if (next !== w.value) {
      w.value = next;
      changed = true;
    }
  }
  return changed;
}

// -- uploads and file lists --------------------------------------------------------------------

function splitName(value) {
  const cut = String(value).lastIndexOf("/");
  return cut < 0 ? { filename: value, subfolder: "" }
    : { filename: value.slice(cut + 1), subfolder: value.slice(0, cut) };
}

/** Show the image a loader selected, if it is one the server listed (so it exists). */
export function showInputImage(app, node, w) {
  if (!w.value || !(w.options.values || []).includes(w.value)) return;
  showImages(node, [app.api.viewURL({ ...splitName(w.value), type: "input" })]);
}

function addUploadWidget(app, node, kind) {
  const target = node.widgets.find((w) => w.kinemaSpec && uploadKind(w.kinemaSpec) === kind);
  const w = node.addWidget("button", "upload", kind, () => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = `${kind}/*`;
    input.addEventListener("change", async () => {
      if (!input.files.length || !target) return;
      try {
        const res = await app.api.uploadImage(input.files[0]);
        const name = res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
        if (!target.options.values.includes(name)) target.options.values.push(name);
        target.value = name;
        showInputImage(app, node, target);
        app.graphChanged("widget");
      } catch (err) {
        app.showToast(`Upload failed: ${err.message}`, "error");
      }
    });
    input.click();
  });
  w.label = `choose ${kind} to upload`;
  w.kinemaDefault = kind;
}

function isFileCombo(spec) {
  return spec.choices !== null && (uploadKind(spec) !== null || spec.choices.length === 0
    || spec.choices.every((c) => typeof c === "string" && FILE_NAME.test(c)));
}

/** Whether a node type lists files in a combo (those lists change while the page is open). */
export function hasFileCombos(info) {
  return [...inputSpecs(info).values()].some(isFileCombo);
}

/** Give the node's combos the choices of this (fresh) node info. */
export function updateCombos(app, node, info) {
  if (!info || !node.widgets) return;
  const specs = inputSpecs(info);
  for (const w of node.widgets) {
    const spec = w.kinemaSpec && specs.get(w.kinemaSpec.name);
    if (!spec || spec.choices === null || w.kinemaSpec.choices === null) continue;
    w.kinemaSpec = spec;
    w.options.values = spec.choices;
    if ((w.value === "" || w.value == null) && spec.choices.length) w.value = spec.choices[0];
    if (uploadKind(spec) === "image") showInputImage(app, node, w);
  }
  node.setDirtyCanvas(true, true);
}

// -- widgets as inputs -------------------------------------------------------------------------

function hide(w) {
  w.kinemaHidden = { type: w.type, computeSize: w.computeSize, draw: w.draw };
  w.type = CONVERTED;
  w.computeSize = () => [0, -4]; // litegraph adds 4 between widgets: takes no room at all
  w.draw = () => {};
}

function show(w) {
  Object.assign(w, w.kinemaHidden);
  delete w.kinemaHidden;
}

/** Fit the node's height to its slots and widgets, keeping the width it had. */
function refit(node, width) {
  const size = node.computeSize();
  node.setSize([Math.max(width, size[0]), size[1]]);
  node.setDirtyCanvas(true, true);
}

/** Turn a widget into an input socket: {name, type, link, widget: {name}}. */
export function convertToInput(app, node, w) {
  const width = node.size[0]; // addInput shrinks the node to its computed size
  hide(w);
  node.addInput(w.name, w.kinemaSpec.type, { widget: { name: w.name } });
  refit(node, width);
  app.graphChanged("convert");
}

/** Turn a converted input back into its widget (dropping its link). */
export function convertToWidget(app, node, w) {
  const width = node.size[0];
  const slot = node.inputs.findIndex((input) => input.widget?.name === w.name);
  if (slot >= 0) {
    if (node.inputs[slot].link != null) node.disconnectInput(slot);
    node.removeInput(slot);
  }
  show(w);
  refit(node, width);
  app.graphChanged("convert");
}

/** After a workflow loads: hide the widgets its inputs replace, show the others. */
export function syncConvertedWidgets(node) {
  for (const w of node.widgets || []) {
    if (!w.kinemaSpec) continue;
    const converted = (node.inputs || []).some((input) => input.widget?.name === w.name);
    if (converted && w.type !== CONVERTED) hide(w);
    else if (!converted && w.type === CONVERTED) show(w);
  }
}

/** Node context-menu entries "Convert X to input" / "Convert X to widget". */
export function widgetMenuOptions(app, node) {
  return (node.widgets || []).filter((w) => w.kinemaSpec).map((w) => (w.type === CONVERTED
    ? { content: `Convert ${w.name} to widget`, callback: () => convertToWidget(app, node, w) }
    : { content: `Convert ${w.name} to input`, callback: () => convertToInput(app, node, w) }));
}
