// Plugins that did not load: a badge in the menu ("2 plugin problems") when the server refused
// a custom node pack, one of its nodes, or a node type another pack already provides; it
// opens a dialog listing each problem under its pack. With no problems nothing is shown.
import { el, loadPanelStyles } from "./panels.js";

const DISMISSED_KEY = "kinema.pluginProblemsDismissed"; // per tab: the problems hidden

/** Strip a leading "NAME: " that repeats what the dialog already shows. */
const withoutPrefix = (text, name) => (text.startsWith(`${name}: `) ? text.slice(name.length + 2)
  : text);

/**
 * The problems of each pack, from the report's structured per-pack details (not its
 * `problems` lines, whose wording is for people): [[pack, [{what, why}]]], packs that loaded
 * cleanly left out. `what` is the skipped node, "failed to load" or "conflict".
 */
export function groupProblems(report) {
  const groups = [];
  for (const [pack, info] of Object.entries(report?.packs || {})) {
    const entries = [];
    if (info.error) entries.push({ what: "failed to load", why: withoutPrefix(info.error, pack) });
    for (const [node, why] of Object.entries(info.refused_nodes || {})) {
      entries.push({ what: node, why: withoutPrefix(why, node) });
    }
    for (const conflict of info.conflicts || []) {
      entries.push({ what: "conflict", why: withoutPrefix(conflict, pack) });
    }
    if (entries.length) groups.push([pack, entries]);
  }
  return groups;
}

const countLabel = (n) => `${n} plugin problem${n === 1 ? "" : "s"}`;

function buildDialog(groups, count, onDismiss) {
  const close = el("button", { className: "close-panel", textContent: "×", type: "button",
    title: "Close (Escape)" });
  const dismiss = el("button", { className: "dismiss-problems", type: "button",
    textContent: "Hide this notice",
    title: "Hide the badge in this tab until the problems change" });
  const sections = groups.map(([pack, entries]) => el("section", { className: "problem-pack" }, [
    el("h3", { textContent: pack }),
    el("ul", {}, entries.map(({ what, why }) => el("li", { className: "problem" }, [
      ...(what ? [el("span", { className: "problem-what", textContent: what })] : []),
      el("span", { className: "problem-why", textContent: why }),
    ]))),
  ]));
  const overlay = el("div", { id: "plugin-problems" }, [
    el("div", { className: "help-box" }, [
      el("header", {}, [el("h2", { textContent: countLabel(count) }), close]),
      el("p", { className: "help-hint", textContent: "These custom nodes were not loaded; " +
        "workflows that use them open with placeholders. The server's log has the details." }),
      ...sections,
      el("footer", {}, [dismiss]),
    ]),
  ]);
  const box = overlay.firstChild;
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-label", "Plugin problems");
  overlay.hidden = true;
  const toggle = (open = overlay.hidden) => { overlay.hidden = !open; };
  overlay.addEventListener("click", (event) => {
    if (event.target === overlay) toggle(false); // the backdrop; text in the box stays selectable
  });
  close.addEventListener("click", () => toggle(false));
  dismiss.addEventListener("click", () => {
    toggle(false);
    onDismiss();
  });
  window.addEventListener("keydown", (event) => {
    if (overlay.hidden || event.key !== "Escape") return;
    event.preventDefault();
    toggle(false);
  }, true);
  document.body.append(overlay);
  return { overlay, toggle };
}

/** Show the badge and its dialog for a /kinema/plugins report that has problems. */
export function showPluginProblems(app, report) {
  const count = report?.problems?.length || 0;
  if (!count) return null;
  const key = JSON.stringify(report.problems);
  if (sessionStorage.getItem(DISMISSED_KEY) === key) return null;
  const { toggle } = buildDialog(groupProblems(report), count, () => {
    sessionStorage.setItem(DISMISSED_KEY, key);
    button.remove();
  });
  const button = app.addMenuButton({ id: "plugin-problems-button", label: `⚠ ${countLabel(count)}`,
    title: "Custom nodes that did not load: show why", onClick: () => toggle() });
  button.setAttribute("aria-haspopup", "dialog");
  return button;
}

export async function setup(app) {
  loadPanelStyles();
  // Not awaited: the canvas opens while the report is on its way.
  app.pluginReport = null;
  app.pluginReportReady = app.api.getPlugins().then((report) => {
    app.pluginReport = report;
    showPluginProblems(app, report);
    return report;
  }, (error) => {
    // An older server without the route: no notice, as with no problems.
    console.warn(`Could not list plugin problems: ${error.message}`);
    return null;
  });
}
