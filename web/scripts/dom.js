// HTML elements kept over nodes on the canvas: multiline text boxes, videos, animated images.
//
// Litegraph draws on a <canvas>, which cannot host a textarea or play a video. Such elements
// live in one layer above the canvas; each frame that draws a node places its elements in
// graph coordinates (scaled with the zoom), and elements whose node was not drawn in a frame
// (scrolled away, collapsed, removed) are hidden, or dropped once their node is gone.

const MIN_TEXT_HEIGHT = 60;
const MIN_READABLE_SCALE = 0.4; // below this zoom the text is unreadable: hide the boxes

const placed = new Map(); // element -> {node, frame}
let layer = null;
let graphCanvas = null;
let frame = 0;

/** Create the layer over the canvas and sweep stale elements after each canvas frame. */
export function installDomLayer(canvas) {
  graphCanvas = canvas;
  layer = document.createElement("div");
  layer.id = "kinema-dom-layer";
  canvas.canvas.parentNode.insertBefore(layer, canvas.canvas.nextSibling);
  const previous = canvas.onDrawForeground;
  canvas.onDrawForeground = function (ctx, area) {
    previous?.call(this, ctx, area);
    for (const [el, entry] of placed) {
      if (entry.frame === frame) continue;
      if (!entry.node.graph) {
        el.remove();
        placed.delete(el);
      } else {
        el.style.display = "none";
      }
    }
    frame += 1;
  };
}

/** Put `el` over the node-local box (x, y, w, h), in graph units, for this frame. */
export function placeElement(node, el, x, y, w, h) {
  if (!el.parentNode) layer.appendChild(el);
  placed.set(el, { node, frame });
  const ds = graphCanvas.ds;
  const [sx, sy] = ds.convertOffsetToCanvas([node.pos[0] + x, node.pos[1] + y]);
  el.style.display = ds.scale < MIN_READABLE_SCALE || h <= 0 ? "none" : "";
  el.style.transform = `translate(${sx}px, ${sy}px) scale(${ds.scale})`;
  el.style.width = `${Math.max(0, w)}px`;
  el.style.height = `${Math.max(0, h)}px`;
}

/** Remove an element now (its node dropped it). */
export function removeElement(el) {
  el.remove();
  placed.delete(el);
}

/**
 * A multiline text widget: a <textarea> over the node. Its value is the textarea's, so the
 * node serialises it like any widget. The last widget of a node stretches to the node's bottom.
 */
export function addTextareaWidget(node, name, value, { onInput, placeholder = "" } = {}) {
  const el = document.createElement("textarea");
  el.className = "kinema-textarea";
  el.spellcheck = false;
  el.placeholder = placeholder || name;
  el.value = value ?? "";
  el.addEventListener("input", () => onInput?.(el.value));
  // Keep canvas shortcuts (Delete, Ctrl+C ...) away from what is typed here.
  el.addEventListener("keydown", (event) => event.stopPropagation());
  const widget = {
    type: "customtext",
    name,
    options: { multiline: true },
    element: el,
    get value() {
      return el.value;
    },
    set value(v) {
      el.value = v ?? "";
    },
    computeSize(width) {
      return [width, MIN_TEXT_HEIGHT];
    },
    draw(ctx, drawnNode, width, y) {
      const visible = drawnNode.widgets.filter((w) => w.type !== "converted-widget");
      const last = visible[visible.length - 1] === widget;
      const height = last ? Math.max(MIN_TEXT_HEIGHT, drawnNode.size[1] - y - 6) : MIN_TEXT_HEIGHT;
      placeElement(drawnNode, el, 10, y, width - 20, height);
    },
    onRemove() {
      removeElement(el);
    },
  };
  node.addCustomWidget(widget);
  node.setSize([Math.max(node.size[0], 300), Math.max(node.size[1], node.computeSize()[1] + 40)]);
  return widget;
}
