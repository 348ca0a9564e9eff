// Page chrome around the canvas: toasts, the menu's extra buttons, hover tooltips.

import { inputSpecs } from "./specs.js";

const TOAST_MS = { info: 4000, success: 3000, warn: 7000, error: 10000 };
const TOOLTIP_DELAY_MS = 600;

/** Show a message in #toast; kind is info, success, warn or error. Click dismisses it. */
export function showToast(message, kind = "info") {
  const area = document.getElementById("toast");
  const item = document.createElement("div");
  item.className = `kinema-toast kinema-toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = message;
  item.addEventListener("click", () => item.remove());
  area.appendChild(item);
  setTimeout(() => item.remove(), TOAST_MS[kind] ?? TOAST_MS.info);
  return item;
}

/** Add a button to the menu's feature area (once per id); returns the button. */
export function addMenuButton({ id, label, title = "", onClick }) {
  const existing = id && document.getElementById(id);
  if (existing) return existing;
  const button = document.createElement("button");
  if (id) button.id = id;
  button.type = "button";
  button.textContent = label;
  button.title = title;
  button.addEventListener("click", (event) => onClick?.(event));
  document.getElementById("kinema-menu-buttons").appendChild(button);
  return button;
}

/** What the pointer is over: a node's title, one of its inputs or widgets. */
function tooltipAt(canvas, x, y) {
  const node = canvas.graph.getNodeOnPos(x, y, canvas.visible_nodes);
  if (!node) return "";
  const info = node.constructor.nodeData;
  const localY = y - node.pos[1];
  if (localY < 0) return node.constructor.desc || "";
  if (!info) return "";
  const specs = inputSpecs(info);
  const widget = (node.widgets || []).find((w) => w.last_y !== undefined && localY >= w.last_y
    && localY <= w.last_y + LiteGraph.NODE_WIDGET_HEIGHT && w.type !== "converted-widget");
  if (widget) return specs.get(widget.name)?.options.tooltip || "";
  const slot = Math.floor(localY / LiteGraph.NODE_SLOT_HEIGHT);
  if (x - node.pos[0] < node.size[0] / 2) {
    return specs.get(node.inputs?.[slot]?.name)?.options.tooltip || "";
  }
  return info.output_tooltips?.[slot] || "";
}

/** Hovering still over a node's title, input, widget or output shows its description. */
export function installTooltips(canvas) {
  const tip = document.createElement("div");
  tip.id = "kinema-tooltip";
  document.body.appendChild(tip);
  let timer = null;
  canvas.canvas.addEventListener("pointermove", (event) => {
    tip.style.display = "none";
    clearTimeout(timer);
    timer = setTimeout(() => {
      const [x, y] = canvas.graph_mouse;
      const text = tooltipAt(canvas, x, y);
      if (!text) return;
      tip.textContent = text;
      tip.style.left = `${event.clientX + 14}px`;
      tip.style.top = `${event.clientY + 14}px`;
      tip.style.display = "block";
    }, TOOLTIP_DELAY_MS);
  });
  canvas.canvas.addEventListener("pointerleave", () => {
    clearTimeout(timer);
    tip.style.display = "none";
  });
}
