// Sharing workflows: save and export, open a file or drop one (JSON, or an output PNG, MP4,
// WebM or WebP carrying its workflow), the examples menu, and autosave across reloads.
import {
  workflowFromFile, workflowFromMp4, workflowFromPng, workflowFromWebm, workflowFromWebp,
} from "./metadata.js";
import { loadPanelStyles } from "./panels.js";

export { workflowFromFile, workflowFromMp4, workflowFromPng, workflowFromWebm, workflowFromWebp };

export const AUTOSAVE_KEY = "kinema.workflow";
const AUTOSAVE_DELAY_MS = 500;

function download(filename, data) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)],
    { type: "application/json" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started once click() returns; the URL is released a moment later.
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Asks for a file name; null when the person cancels. Characters that no file system accepts
// are replaced rather than refused.
function askFileName(suggestion) {
  const name = window.prompt("Save as", suggestion);
  if (name === null) return null;
  const clean = (name.trim() || suggestion).replace(/\.json$/i, "").replace(/[\\/:*?"<>|]/g, "_");
  return `${clean}.json`;
}

export function saveWorkflow(app) {
  const filename = askFileName("workflow");
  if (filename) download(filename, app.serialize());
}

export function exportApiPrompt(app) {
  let output;
  try {
    output = app.graphToPrompt().output;
  } catch (error) {
    // A graph that cannot convert (a required input left unconnected) says what is wrong.
    const detail = error.error ? `${error.error.message} ${error.error.details}` : error.message;
    app.showToast(`Cannot export: ${detail}`, "error");
    return;
  }
  const filename = askFileName("workflow_api");
  if (filename) download(filename, output);
}

/** Open a File (JSON or an output carrying its workflow); a toast says when it has none. */
export async function openFile(app, file) {
  let workflow = null;
  try {
    workflow = await workflowFromFile(file);
  } catch (error) {
    app.showToast(`Could not read ${file.name}: ${error.message}`, "error");
    return false;
  }
  if (!workflow) {
    app.showToast(`No workflow found in ${file.name}`, "warn");
    return false;
  }
  return app.loadWorkflow(workflow); // it says itself why a workflow does not open
}

function setupFileInput(app) {
  const input = Object.assign(document.createElement("input"), {
    type: "file", id: "load-file", accept: ".json,.png,.mp4,.mov,.webm,.mkv,.webp",
  });
  input.hidden = true;
  input.addEventListener("change", async () => {
    const [file] = input.files;
    input.value = ""; // so choosing the same file again fires "change" again
    if (file) await openFile(app, file);
  });
  document.body.append(input);
  return input;
}

// Dropping a file anywhere opens its workflow, except onto a node that takes files itself
// (an image loader): litegraph hands those to the node.
function setupDrop(app) {
  const hasFiles = (event) => event.dataTransfer?.types?.includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // without this the browser navigates to the dropped file
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", async (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    if (event.target === app.canvas.canvas && await nodeTakesDrop(app, event)) return;
    const [file] = event.dataTransfer.files;
    if (file) await openFile(app, file);
  });
}

// litegraph gives a drop to the node under it when it has onDropFile/onDropData; ComfyUI
// plugins' onDragDrop(event) answers true when it took the drop.
async function nodeTakesDrop(app, event) {
  const [x, y] = app.canvas.convertEventToCanvasOffset(event);
  const node = app.graph.getNodeOnPos(x, y);
  if (!node) return false;
  return Boolean(node.onDropFile || node.onDropData || await node.onDragDrop?.(event));
}

function setupExamples(app) {
  const menu = document.createElement("div");
  menu.id = "examples-menu";
  menu.className = "kinema-popup";
  menu.hidden = true;
  document.body.append(menu);
  const close = () => { menu.hidden = true; };

  const button = app.addMenuButton({
    id: "examples-button", label: "Examples", title: "Open an example workflow",
    onClick: async () => {
      if (!menu.hidden) return close();
      let names = [];
      try {
        names = await app.api.getWorkflows();
      } catch (error) {
        app.showToast(`Could not list the examples: ${error.message}`, "error");
      }
      menu.replaceChildren(...names.map((name) => {
        const item = Object.assign(document.createElement("button"), {
          className: "example-item", textContent: name.replace(/\.json$/, ""), title: name,
        });
        item.dataset.name = name;
        return item;
      }));
      if (!names.length) menu.textContent = "No example workflows";
      // The menu sits at the right edge: the list opens below the button, aligned right.
      const rect = button.getBoundingClientRect();
      Object.assign(menu.style, { right: `${window.innerWidth - rect.right}px`,
        top: `${rect.bottom + 4}px` });
      menu.hidden = false;
    },
  });
  menu.addEventListener("click", async (event) => {
    const item = event.target.closest(".example-item");
    if (!item) return;
    close();
    try {
      await app.loadWorkflow(await app.api.getWorkflow(item.dataset.name));
    } catch (error) {
      app.showToast(`Could not fetch ${item.dataset.name}: ${error.message}`, "error");
    }
  });
  document.addEventListener("pointerdown", (event) => {
    if (!menu.hidden && !menu.contains(event.target) && !button.contains(event.target)) close();
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
}

function setupAutosave(app) {
  let timer = null, warned = false;
  const save = () => {
    clearTimeout(timer);
    timer = null;
    try {
      localStorage.setItem(AUTOSAVE_KEY, JSON.stringify(app.serialize()));
    } catch (error) {
      // Quota exceeded (a huge graph) or storage disabled: say so once, keep working.
      if (!warned) app.showToast(`Autosave is off: ${error.message}`, "error");
      warned = true;
    }
  };
  app.addEventListener("graphChanged", () => {
    clearTimeout(timer);
    timer = setTimeout(save, AUTOSAVE_DELAY_MS);
  });
  app.addEventListener("workflowLoaded", save);
  // An edit made just before closing the tab is not lost to the debounce.
  window.addEventListener("pagehide", () => { if (timer) save(); });
}

/** The autosaved canvas workflow, or null when there is none (or it is unreadable). */
export function autosavedWorkflow() {
  try {
    const workflow = JSON.parse(localStorage.getItem(AUTOSAVE_KEY));
    return workflow && Array.isArray(workflow.nodes) ? workflow : null;
  } catch {
    return null;
  }
}

export async function setup(app) {
  loadPanelStyles();
  const input = setupFileInput(app);
  app.addMenuButton({ id: "load-button", label: "Load", title: "Open a workflow (Ctrl+O)",
    onClick: () => input.click() });
  app.addMenuButton({ id: "save-button", label: "Save", title: "Download the workflow (Ctrl+S)",
    onClick: () => saveWorkflow(app) });
  app.addMenuButton({ id: "export-api-button", label: "Export API",
    title: "Download the API-format prompt", onClick: () => exportApiPrompt(app) });
  setupExamples(app);
  setupDrop(app);
  setupAutosave(app);
  // The core opens its default workflow after the features' set-up unless one is open by
  // then: reopening the autosaved graph here is what makes a reload keep the work.
  const saved = autosavedWorkflow();
  if (saved) await app.loadWorkflow(saved);
}
