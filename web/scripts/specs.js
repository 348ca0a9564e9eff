// A node type's inputs as /object_info describes them, read the way engine/registry.py reads
// INPUT_TYPES, and the order of the values a canvas node serialises (engine/workflow.py
// `_widget_layout`). The canvas builds its widgets from this layout and the converter reads
// widgets_values with it, so the two can never disagree.

export const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
export const SEED_NAMES = new Set(["seed", "noise_seed"]);
// Input option -> the value the upload button serialises (Python dict order matters).
export const UPLOAD_OPTIONS = [["image_upload", "image"], ["video_upload", "video"],
                               ["audio_upload", "audio"]];

export const hasOwn = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

/** A JSON object (Python's Mapping), not a list or null. */
export function isMapping(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Python's truthiness of a JSON value ([] and {} are false there, true in JS). */
export function pyTruthy(value) {
  if (Array.isArray(value)) return value.length > 0;
  if (isMapping(value)) return Object.keys(value).length > 0;
  return Boolean(value);
}

/** One declared input: ("INT", {...}), (["a", "b"], {...}), ("COMBO", {options}) or "IMAGE". */
export function parseSpec(name, section, raw) {
  if (!Array.isArray(raw)) raw = [raw];
  const kind = raw[0];
  const options = raw.length > 1 && isMapping(raw[1]) ? raw[1] : {};
  if (Array.isArray(kind)) return { name, type: "COMBO", section, options, choices: kind };
  if (kind === "COMBO" && Array.isArray(options.options)) {
    return { name, type: "COMBO", section, options, choices: options.options };
  }
  return { name, type: String(kind), section, options, choices: null };
}

/**
 * Every declared input by name, required then optional then hidden, in declaration order.
 * input_order carries that order: JSON objects lose it for names that look like numbers.
 * A name declared twice keeps its first place and its last declaration, like a Python dict.
 */
export function inputSpecs(info) {
  const specs = new Map();
  for (const section of ["required", "optional", "hidden"]) {
    const entries = info?.input?.[section];
    if (!isMapping(entries)) continue;
    const order = section !== "hidden" && Array.isArray(info.input_order?.[section])
      ? info.input_order[section] : Object.keys(entries);
    for (const name of order) {
      if (!hasOwn(entries, name)) continue;
      specs.set(name, section === "hidden"
        ? { name, type: String(entries[name]), section, options: {}, choices: null }
        : parseSpec(name, section, entries[name]));
    }
  }
  return specs;
}

/** Whether the canvas shows the input as a widget (a value) rather than a socket. */
export function isWidget(spec) {
  if (pyTruthy(spec.options.forceInput)) return false;
  return spec.choices !== null || WIDGET_TYPES.has(spec.type);
}

/** Whether the widget gets a control_after_generate companion (seeds and opted-in inputs). */
export function isControlled(spec) {
  return pyTruthy(spec.options.control_after_generate)
    || (spec.type === "INT" && SEED_NAMES.has(spec.name));
}

/** The upload kind an input asks for ("image", "video", "audio") or null. */
export function uploadKind(spec) {
  const found = UPLOAD_OPTIONS.find(([option]) => pyTruthy(spec.options[option]));
  return found ? found[1] : null;
}

/**
 * [kind, name] per serialised widget value: "widget", "control", "filter" or "upload".
 * The upload button follows the last required input; a controlled combo also has a filter.
 */
export function widgetLayout(info) {
  const layout = [];
  let upload = null;
  const specs = [...inputSpecs(info).values()].filter((s) => s.section !== "hidden");
  specs.forEach((spec, i) => {
    if (isWidget(spec)) {
      layout.push(["widget", spec.name]);
      if (isControlled(spec)) {
        layout.push(["control", spec.name]);
        if (spec.choices !== null) layout.push(["filter", spec.name]);
      }
    }
    if (spec.section === "required") upload = upload || uploadKind(spec);
    const lastRequired = i + 1 === specs.length || specs[i + 1].section !== "required";
    if (spec.section === "required" && lastRequired && upload) layout.push(["upload", upload]);
  });
  return layout;
}

/** A widget's initial value: its default, else the first choice, else the type's zero. */
export function defaultValue(spec) {
  if (hasOwn(spec.options, "default")) return spec.options.default;
  if (spec.choices?.length) return spec.choices[0];
  return { INT: 0, FLOAT: 0.0, BOOLEAN: false }[spec.type] ?? "";
}
