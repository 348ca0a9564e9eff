// Undo and redo: a snapshot of the serialised graph after each edit, at most UNDO_LIMIT back.
//
// Edits arrive as "graphChanged" events; a burst of them (a drag, typing in a widget) becomes
// one step once the graph has been quiet for QUIET_MS. Snapshots are the JSON text, compared
// as text, so an event that changed nothing (a selection) records nothing.

export const UNDO_LIMIT = 100;
const QUIET_MS = 300;

export const isTyping = (event) => {
  const target = event.target;
  return Boolean(target && (target.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)));
};

export class UndoHistory {
  constructor(app) {
    this.app = app;
    this.undoStack = [];
    this.redoStack = [];
    this.current = this.snapshot();
    this.timer = null;
    this.restoring = false;
  }

  // The view (pan and zoom, kept in extra.ds) is not an edit: it is left out, and kept
  // where it is when a snapshot is restored.
  snapshot() {
    const workflow = this.app.serialize();
    if (workflow.extra) delete workflow.extra.ds;
    return JSON.stringify(workflow);
  }

  changed() {
    if (this.restoring) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.record(), QUIET_MS);
  }

  /** Take the pending snapshot now (before an undo, or when a workflow is loaded). */
  record() {
    clearTimeout(this.timer);
    this.timer = null;
    const now = this.snapshot();
    if (now === this.current) return;
    this.undoStack.push(this.current);
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.redoStack = [];
    this.current = now;
  }

  undo() {
    this.record();
    return this.step(this.undoStack, this.redoStack);
  }

  redo() {
    this.record();
    return this.step(this.redoStack, this.undoStack);
  }

  step(from, to) {
    if (!from.length) return false;
    to.push(this.current);
    this.restore(from.pop());
    return true;
  }

  /** Start again from the graph as it is (a workflow opened at start-up is no edit). */
  reset() {
    clearTimeout(this.timer);
    this.undoStack = [];
    this.redoStack = [];
    this.current = this.snapshot();
  }

  // graph.configure rather than app.loadWorkflow: the view stays where it is.
  restore(text) {
    const { app } = this;
    this.restoring = true;
    try {
      app.graph.configure(JSON.parse(text));
      app.canvas.setDirty(true, true);
      // Listeners (autosave) learn of the change; this history ignores it while restoring.
      app.graphChanged("undo");
    } finally {
      this.restoring = false;
    }
    // Compare later edits with what the graph serialises to now, which may differ from the
    // snapshot in details (a recomputed size), so they are not mistaken for new edits.
    this.current = this.snapshot();
  }
}

export async function setup(app) {
  const history = new UndoHistory(app);
  app.undoHistory = history;
  app.addEventListener("graphChanged", () => history.changed());
  // Opening a workflow later is a step too: undo goes back to the graph it replaced.
  app.addEventListener("workflowLoaded", () => (app.isSetUp ? history.record() : history.reset()));

  const act = (redo) => {
    if (!(redo ? history.redo() : history.undo())) {
      app.showToast(redo ? "Nothing to redo" : "Nothing to undo", "info");
    }
  };
  app.addMenuButton({ id: "undo-button", label: "Undo", title: "Undo (Ctrl+Z)",
    onClick: () => act(false) });
  app.addMenuButton({ id: "redo-button", label: "Redo", title: "Redo (Ctrl+Y, Ctrl+Shift+Z)",
    onClick: () => act(true) });

  window.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey || isTyping(event)) return;
    const key = event.key.toLowerCase();
    const redo = key === "y" || (key === "z" && event.shiftKey);
    if (key !== "z" && key !== "y") return;
    event.preventDefault();
    act(redo);
  });
}
