// Socket types: which may connect (engine/graph.py `types_compatible`) and their colours.

// A link converts between these two (engine/graph.py CONVERTING_TYPES).
const CONVERTING = ["FRAMES", "IMAGE"];

// A stable palette for the common types; others get a colour hashed from their name, so a
// plugin's type looks the same in every session and on every machine.
const PALETTE = {
  IMAGE: "#64b5f6",
  MASK: "#81c784",
  LATENT: "#ff9cf9",
  FRAMES: "#4dd0e1",
  VIDEO: "#26c6da",
  AUDIO: "#ffb74d",
  MODEL: "#b39ddb",
  CLIP: "#ffd500",
  VAE: "#ff6e6e",
  CONDITIONING: "#ffa931",
  INT: "#8bc34a",
  FLOAT: "#cddc39",
  STRING: "#f0a0c0",
  BOOLEAN: "#90a4ae",
  COMBO: "#a1887f",
  "*": "#d0d0d0",
};

/** The colour of a socket type. */
export function typeColor(type) {
  const key = String(type ?? "*");
  if (PALETTE[key]) return PALETTE[key];
  let hash = 0;
  for (const ch of key) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360}, 55%, 62%)`;
}

/** Register colours for these types with litegraph (links and slots). */
export function registerTypeColors(types, canvas) {
  for (const type of types) {
    const color = typeColor(type);
    LGraphCanvas.link_type_colors[type] = color;
    if (canvas) canvas.default_connection_color_byType[type] = color;
  }
}

/**
 * Whether an output of type `a` may feed an input of type `b`: equal, "*" on either side, or
 * comma lists ("IMAGE,MASK") sharing a type, or IMAGE and FRAMES, which convert into each
 * other. Case matters, as in the engine. Litegraph's own
 * generic slots ("", 0, undefined) count as "*".
 */
export function typesCompatible(a, b) {
  const norm = (t) => (t === "" || t === 0 || t === null || t === undefined ? "*" : String(t));
  const [x, y] = [norm(a), norm(b)];
  if (x === "*" || y === "*") return true;
  if (x !== y && CONVERTING.includes(x) && CONVERTING.includes(y)) return true;
  const left = new Set(x.split(","));
  return y.split(",").some((t) => left.has(t));
}

/** Litegraph decides every connection (dragging, menus, search) through this function. */
export function installConnectionRule() {
  LiteGraph.isValidConnection = typesCompatible;
}
