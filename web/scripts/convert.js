// Canvas workflow -> API prompt: a rule-by-rule port of engine/workflow.py `canvas_to_api`.
//
// The server converts canvas workflows too (POST /prompt accepts either format), and the two
// converters must give the same prompt for the same file, errors included. So this mirrors the
// Python line by line, down to Python's truthiness, equality and list indexing; keep them in
// step when either changes. One gap is unavoidable: JSON.parse cannot tell 2.0 from 2, so a
// float where Python insists on an int (a link id, an origin slot) is accepted here.

import { hasOwn, isMapping, pyTruthy, widgetLayout } from "./specs.js";

const MODE_NEVER = 2;
const MODE_BYPASS = 4;
const CONTROL_VALUES = new Set(["fixed", "increment", "decrement", "randomize", "increment-wrap"]);
const UPLOAD_VALUES = new Set(["image", "video", "audio", "upload"]); // and null
const DROPPED_TYPES = new Set(["Note", "MarkdownNote"]);
const API_IDS_KEY = "kinema_api_ids"; // canvas extra: canvas node id -> API id

/** A workflow that cannot be read; `error` has the server's shape {type, message, ...}. */
export class WorkflowError extends Error {
  constructor(message, { type = "invalid_prompt", details = "", extraInfo = {} } = {}) {
    super(message);
    this.error = { type, message, details, extra_info: extraInfo };
  }
}

/** A Python built-in exception the converter raises where the Python code would. */
class PythonError extends Error {
  constructor(pyType, message) {
    super(message);
    this.pyType = pyType;
  }
}

const bad = (message, details = "", extraInfo = {}) =>
  new WorkflowError(message, { details, extraInfo });
const badNode = (nid, message) => bad(message, `Node ID '#${nid}'`, { node_id: nid });

// -- Python semantics of JSON values ---------------------------------------------------------

/** mapping.get(key, default): only own keys ("constructor" is not a key of {}). */
const get = (obj, key, dflt = null) => (hasOwn(obj, key) ? obj[key] : dflt);
/** Python's `a or b`. */
const or = (a, b) => (pyTruthy(a) ? a : b);
const isInt = (v) => typeof v === "number" && Number.isInteger(v);

function reprString(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  const escaped = s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\r/g, "\\r")
    .replace(/\t/g, "\\t").replaceAll(quote, `\\${quote}`);
  return `${quote}${escaped}${quote}`;
}

/** Python's repr() of a JSON value, as f"{x!r}" writes it in the server's messages. */
function pyRepr(v) {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return reprString(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  if (isMapping(v)) {
    return `{${Object.entries(v).map(([k, x]) => `${reprString(k)}: ${pyRepr(x)}`).join(", ")}}`;
  }
  return String(v);
}

/** Python's str() of a JSON value. */
const pyStr = (v) => (typeof v === "string" ? v : pyRepr(v));

/** Python's == between JSON values (True == 1, lists and dicts by value). */
function pyEq(a, b) {
  const scalar = (v) => typeof v === "boolean" || typeof v === "number";
  if (scalar(a) && scalar(b)) return Number(a) === Number(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
  }
  if (isMapping(a) && isMapping(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length
      && keys.every((k) => hasOwn(b, k) && pyEq(a[k], b[k]));
  }
  return a === b;
}

/** list[i] with Python's negative indices and IndexError. */
function pyIndex(list, i) {
  const at = i < 0 ? i + list.length : i;
  if (at < 0 || at >= list.length) throw new PythonError("IndexError", "list index out of range");
  return list[at];
}

/** obj[key] = value, safe for any key a user may write ("__proto__" included). */
function put(obj, key, value) {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

// -- widget values -----------------------------------------------------------------------------

/** Map a canvas node's widgets_values onto its widget inputs by name (`_widget_inputs`). */
export function widgetInputs(info, values) {
  const layout = widgetLayout(info);
  const names = layout.filter(([kind]) => kind === "widget").map(([, name]) => name);
  const out = {};
  if (isMapping(values)) {
    for (const name of names) if (hasOwn(values, name)) put(out, name, values[name]);
    return out;
  }
  if (!Array.isArray(values)) return out;
  // A full list has every value; a shorter one (an older save) lacks some frontend-only ones.
  const full = values.length === layout.length;
  let pos = 0;
  let controlled = false;
  for (const [kind, name] of layout) {
    if (pos >= values.length) break;
    const value = values[pos];
    if (kind === "widget") {
      put(out, name, value);
    } else if (!full && !(
      (kind === "control" && typeof value === "string" && CONTROL_VALUES.has(value))
      || (kind === "filter" && controlled && typeof value === "string")
      || (kind === "upload" && (value === null
                                || (typeof value === "string" && UPLOAD_VALUES.has(value)))))) {
      controlled = false;
      continue;
    }
    controlled = kind === "control";
    pos += 1;
  }
  return out;
}

// -- reading the canvas ------------------------------------------------------------------------

function nodeKey(raw, what) {
  if (isInt(raw) || (typeof raw === "string" && raw)) return String(raw);
  throw bad(`Canvas workflow: ${what} has an invalid node id ${pyRepr(raw)}.`, what);
}

function linkId(raw, where) {
  if (isInt(raw)) return raw;
  if (typeof raw === "string" && /^[0-9]+$/.test(raw)) return parseInt(raw, 10);
  throw bad(`Canvas workflow: ${where} has an invalid link id ${pyRepr(raw)}.`, where);
}

/** Link id -> [origin node, origin slot, type], from arrays or schema-1 objects. */
function readLinks(raw) {
  const links = new Map();
  if (raw === null || raw === undefined) return links;
  if (!Array.isArray(raw)) throw bad("Canvas workflow: links must be a list.", "links");
  raw.forEach((link, i) => {
    if (link === null) return;
    let lid;
    let origin;
    let slot;
    let ltype;
    if (Array.isArray(link) && link.length >= 5) {
      [lid, origin, slot] = link;
      ltype = link.length > 5 ? link[5] : "*";
    } else if (isMapping(link)) {
      lid = get(link, "id");
      origin = get(link, "origin_id");
      slot = get(link, "origin_slot");
      ltype = get(link, "type", "*");
    } else {
      throw bad(`Canvas workflow: link #${i} is neither a list of at least 5 items nor an `
                + "object.", `links[${i}]`);
    }
    if (!isInt(slot)) {
      throw bad(`Canvas workflow: link #${i} has an invalid origin slot.`, `links[${i}]`);
    }
    // Python evaluates the value before the key: the origin is checked before the link id.
    const value = [nodeKey(origin, `links[${i}]`), slot, pyStr(ltype)];
    links.set(linkId(lid, `links[${i}]`), value);
  });
  return links;
}

function readNodes(raw) {
  if (!Array.isArray(raw)) throw bad("Canvas workflow: nodes must be a list.", "nodes");
  const nodes = new Map();
  raw.forEach((node, i) => {
    if (!isMapping(node)) throw bad(`Canvas workflow: node #${i} is not an object.`, `nodes[${i}]`);
    const key = nodeKey(get(node, "id"), `nodes[${i}]`);
    if (nodes.has(key)) throw badNode(key, `Canvas workflow: node id ${key} is used twice.`);
    if (typeof get(node, "type") !== "string") {
      throw badNode(key, `Canvas workflow: node ${key} has no type.`);
    }
    for (const field of ["inputs", "outputs"]) {
      const slots = or(get(node, field), []);
      if (!Array.isArray(slots) || !slots.every(isMapping)) {
        throw badNode(key, `Canvas workflow: node ${key}: ${field} must be a list of objects.`);
      }
    }
    nodes.set(key, node);
  });
  return nodes;
}

/** Resolves canvas links through reroutes, bypassed, muted and primitive nodes. */
class CanvasReader {
  constructor(nodes, links) {
    this.nodes = nodes;
    this.links = links;
  }

  /** ["link", node, slot] | ["value", v, null] | ["keep" | "drop", null, null] */
  resolve(lid, where, seen = new Set()) {
    if (seen.has(lid)) {
      throw bad(`Canvas workflow: ${where} loops through reroute or bypassed nodes.`, where);
    }
    if (!this.links.has(lid)) {
      throw bad(`Canvas workflow: ${where} uses link ${lid}, which does not exist.`, where,
                { link_id: lid });
    }
    const [origin, slot, ltype] = this.links.get(lid);
    const src = this.nodes.get(origin);
    if (src === undefined) {
      throw bad(`Canvas workflow: link ${lid} starts at node ${origin}, which does not exist.`,
                where, { link_id: lid, node_id: origin });
    }
    seen = new Set([...seen, lid]);
    const kind = src.type;
    const inputs = or(get(src, "inputs"), []);
    if (kind === "PrimitiveNode") {
      const values = get(src, "widgets_values");
      if (Array.isArray(values) && values.length) return ["value", values[0], null];
      return ["keep", null, null];
    }
    if (kind === "Reroute") {
      const upstream = inputs.length ? get(inputs[0], "link") : null;
      return this.follow(upstream, where, seen);
    }
    const mode = get(src, "mode");
    if (DROPPED_TYPES.has(kind) || pyEq(mode, MODE_NEVER)) return ["drop", null, null];
    if (pyEq(mode, MODE_BYPASS)) {
      // A bypassed node passes through its first input of the output's type (this slot first).
      const outputs = or(get(src, "outputs"), []);
      const want = slot < outputs.length ? get(pyIndex(outputs, slot), "type", ltype) : ltype;
      const order = (slot < inputs.length ? [slot] : []).concat([...inputs.keys()]);
      const match = order.find((i) => pyEq(get(pyIndex(inputs, i), "type"), want));
      const upstream = match === undefined ? null : get(pyIndex(inputs, match), "link");
      return this.follow(upstream, where, seen);
    }
    return ["link", origin, slot];
  }

  follow(upstream, where, seen) {
    if (upstream === null) return ["drop", null, null];
    return this.resolve(linkId(upstream, where), where, seen);
  }
}

/** Convert a litegraph canvas workflow into an API-format prompt, as the server does. */
export function canvasToApi(canvas, objectInfo) {
  if (!isMapping(canvas)) throw bad("A canvas workflow must be a JSON object.");
  try {
    return convert(canvas, objectInfo);
  } catch (err) {
    if (err instanceof WorkflowError) throw err;
    // An unforeseen shape is still the user's data: a WorkflowError, worded like Python's.
    const pyType = err instanceof PythonError ? err.pyType : err.name;
    throw bad(`Canvas workflow could not be read: ${err.message}`, pyType);
  }
}

function convert(canvas, objectInfo) {
  const nodes = readNodes(get(canvas, "nodes"));
  const reader = new CanvasReader(nodes, readLinks(get(canvas, "links")));
  const extra = get(canvas, "extra");
  const rawIds = isMapping(extra) ? get(extra, API_IDS_KEY) : null;
  const ids = new Map(isMapping(rawIds)
    ? Object.entries(rawIds).map(([k, v]) => [k, pyStr(v)]) : []);
  const apiId = (key) => (ids.has(key) ? ids.get(key) : key);
  const prompt = {};
  for (const [key, node] of nodes) {
    const kind = node.type;
    const mode = get(node, "mode");
    if (pyEq(mode, MODE_NEVER) || pyEq(mode, MODE_BYPASS) || DROPPED_TYPES.has(kind)
        || kind === "Reroute" || kind === "PrimitiveNode") continue;
    const info = hasOwn(objectInfo, kind) ? objectInfo[kind] : null;
    const values = get(node, "widgets_values");
    let inputs;
    if (info) inputs = widgetInputs(info, values);
    else inputs = isMapping(values) ? { ...values } : {};
    for (const slot of or(get(node, "inputs"), [])) {
      if (get(slot, "link") === null) continue;
      const widget = get(slot, "widget");
      const widgetName = isMapping(widget) ? get(widget, "name") : null;
      const name = pyStr(or(widgetName, get(slot, "name", "")));
      const where = `node ${key} input '${name}'`;
      const [how, src, srcSlot] = reader.resolve(linkId(slot.link, where), where);
      if (how === "link") put(inputs, name, [apiId(src), srcSlot]);
      else if (how === "value") put(inputs, name, src);
      else if (how === "drop") delete inputs[name];
    }
    const title = or(get(node, "title"), info ? info.display_name : kind);
    put(prompt, apiId(key), { class_type: kind, inputs, _meta: { title: pyStr(title) } });
  }
  return prompt;
}

/** The serialised canvas (graph.serialize() shape) as {output: API prompt}. */
export function graphToPrompt(workflow, objectInfo) {
  return { output: canvasToApi(workflow, objectInfo) };
}
