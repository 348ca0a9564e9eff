// Keyboard shortcuts: the help overlay that lists them, and the ones litegraph lacks
// (Ctrl+S save, Ctrl+O open, Ctrl+G group the selected nodes).
import { loadPanelStyles } from "./panels.js";
import { isTyping } from "./undo.js";

const SHORTCUTS = [
  ["Ctrl+Enter", "Queue the workflow"],
  ["Ctrl+Shift+Enter", "Queue the workflow first (front of the queue)"],
  ["Ctrl+S", "Save the workflow as a JSON file"],
  ["Ctrl+O", "Open a workflow (JSON, or a PNG/MP4/WebM/WebP output)"],
  ["Ctrl+Z", "Undo"],
  ["Ctrl+Y, Ctrl+Shift+Z", "Redo"],
  ["Q", "Show or hide the queue and history"],
  ["Double-click", "Search for a node to add"],
  ["Delete", "Remove the selected nodes"],
  ["Ctrl+C, Ctrl+V", "Copy and paste the selected nodes"],
  ["Ctrl+A", "Select every node"],
  ["Ctrl+G", "Group the selected nodes"],
  ["Space + drag", "Pan the canvas"],
  ["Wheel", "Zoom"],
  ["?, F1", "This help"],
  ["Escape", "Close this help or a menu"],
];

const GROUP_PADDING = 10;

/** Put the selected nodes in a new group fitted around them; the group or null. */
export function groupSelectedNodes(app) {
  const { LiteGraph } = window;
  const nodes = Object.values(app.canvas.selected_nodes || {});
  if (!nodes.length) {
    app.showToast("Select the nodes to group first", "info");
    return null;
  }
  // A node's box starts above pos by its title bar.
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const node of nodes) {
    left = Math.min(left, node.pos[0]);
    top = Math.min(top, node.pos[1] - title);
    right = Math.max(right, node.pos[0] + node.size[0]);
    bottom = Math.max(bottom, node.pos[1] + node.size[1]);
  }
  const group = new LiteGraph.LGraphGroup("Group");
  // The group's own title bar sits above the nodes, inside the group.
  const header = group.font_size + 2 * GROUP_PADDING;
  group.pos = [left - GROUP_PADDING, top - header];
  group.size = [right - left + 2 * GROUP_PADDING, bottom - top + header + GROUP_PADDING];
  app.graph.add(group);
  app.canvas.setDirty(true, true);
  app.graphChanged("group");
  return group;
}

function buildOverlay() {
  const rows = SHORTCUTS.map(([keys, what]) => {
    const row = document.createElement("tr");
    const keyCell = document.createElement("th");
    for (const [i, combo] of keys.split(", ").entries()) {
      if (i) keyCell.append(" or ");
      keyCell.append(Object.assign(document.createElement("kbd"), { textContent: combo }));
    }
    row.append(keyCell, Object.assign(document.createElement("td"), { textContent: what }));
    return row;
  });
  const overlay = document.createElement("div");
  overlay.id = "help-overlay";
  overlay.hidden = true;
  const box = document.createElement("div");
  box.className = "help-box";
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-label", "Keyboard shortcuts");
  const table = document.createElement("table");
  table.append(...rows);
  box.append(Object.assign(document.createElement("h2"), { textContent: "Keyboard shortcuts" }),
    table, Object.assign(document.createElement("p"), {
      className: "help-hint", textContent: "Press Escape or click anywhere to close." }));
  overlay.append(box);
  document.body.append(overlay);
  return overlay;
}

export async function setup(app) {
  loadPanelStyles();
  const overlay = buildOverlay();
  const toggle = (open = overlay.hidden) => { overlay.hidden = !open; };
  overlay.addEventListener("click", () => toggle(false));
  app.addMenuButton({ id: "help-button", label: "?", title: "Keyboard shortcuts (?, F1)",
    onClick: () => toggle() });

  const click = (id) => document.getElementById(id)?.click();
  window.addEventListener("keydown", (event) => {
    if (!overlay.hidden && event.key === "Escape") {
      event.preventDefault();
      return toggle(false);
    }
    if (isTyping(event)) return;
    const ctrl = event.ctrlKey || event.metaKey, key = event.key.toLowerCase();
    let handled = true;
    if (event.key === "F1" || (event.key === "?" && !ctrl)) toggle();
    else if (ctrl && !event.shiftKey && key === "s") click("save-button");
    else if (ctrl && !event.shiftKey && key === "o") click("load-button");
    else if (ctrl && !event.shiftKey && key === "g") groupSelectedNodes(app);
    else handled = false;
    // Keep the browser's own "save page", "open file" and help from opening as well.
    if (handled) event.preventDefault();
  }, true);
}
