// The server's HTTP and websocket API (ComfyUI's routes and message types).
//
// Websocket messages are re-dispatched as CustomEvents named after their type (status,
// executing, progress, ...; plugins' own types too), binary preview frames as "b_preview"
// with a Blob. With ?token=T in the page URL every request carries it.

const CLIENT_ID_KEY = "kinema.clientId";
const PREVIEW_FRAME = 1; // binary frame event type: a preview image
const IMAGE_MIME = { 1: "image/jpeg", 2: "image/png" };
const MAX_RECONNECT_DELAY_MS = 5000;

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function newClientId() {
  // randomUUID needs a secure context; a LAN address over plain http is not one.
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll("-", "");
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
}

export class Api extends EventTarget {
  constructor() {
    super();
    this.token = new URLSearchParams(location.search).get("token");
    // Stable per tab, so a reload gets the messages of the prompt it queued before.
    this.clientId = sessionStorage.getItem(CLIENT_ID_KEY) || newClientId();
    sessionStorage.setItem(CLIENT_ID_KEY, this.clientId);
    this.socket = null;
    this.reconnectDelay = 250;
    this.comboCache = new Map(); // class -> pending /object_info/{class}, shared for a moment
  }

  /** fetch() with the auth token; throws ApiError on a network failure. */
  async fetchApi(route, init = {}) {
    const headers = new Headers(init.headers || {});
    if (this.token) headers.set("Authorization", `Bearer ${this.token}`);
    try {
      return await fetch(route, { ...init, headers });
    } catch (err) {
      throw new ApiError(0, null, `Cannot reach the server (${route}): ${err.message}`);
    }
  }

  /** The parsed JSON answer of a route; a non-2xx answer throws ApiError with its body. */
  async json(route, init = {}) {
    const res = await this.fetchApi(route, init);
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const message = body?.error?.message || `${route} answered ${res.status}`;
      throw new ApiError(res.status, body, message);
    }
    return body;
  }

  post(route, body) {
    return this.json(route, { method: "POST", headers: { "Content-Type": "application/json" },
                              body: JSON.stringify(body ?? {}) });
  }

  /** A URL for elements that cannot send headers (img, video): the token goes in the query. */
  withToken(url) {
    if (!this.token) return url;
    return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(this.token)}`;
  }

  getObjectInfo() {
    return this.json("/object_info");
  }

  /** One class's /object_info; concurrent callers (a workflow of many loaders) share it. */
  getNodeInfo(nodeClass) {
    let pending = this.comboCache.get(nodeClass);
    if (!pending) {
      pending = this.json(`/object_info/${encodeURIComponent(nodeClass)}`)
        .then((info) => info[nodeClass])
        .finally(() => setTimeout(() => this.comboCache.delete(nodeClass), 1000));
      this.comboCache.set(nodeClass, pending);
    }
    return pending;
  }

  /** POST /prompt: {ok: true, body} or, for a refused prompt (400), {ok: false, body}. */
  async queuePrompt(request) {
    const res = await this.fetchApi("/prompt", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const body = await res.json().catch(() => null);
    if (res.ok || (res.status === 400 && body)) return { ok: res.ok, status: res.status, body };
    throw new ApiError(res.status, body, body?.error?.message || `/prompt answered ${res.status}`);
  }

  getQueue() {
    return this.json("/queue");
  }

  /** {clear: true} or {delete: [ids]} */
  editQueue(body) {
    return this.fetchApi("/queue", { method: "POST", body: JSON.stringify(body),
                                     headers: { "Content-Type": "application/json" } });
  }

  interrupt() {
    return this.fetchApi("/interrupt", { method: "POST" });
  }

  getHistory(maxItems = 200) {
    return this.json(`/history?max_items=${maxItems}`);
  }

  getHistoryItem(promptId) {
    return this.json(`/history/${encodeURIComponent(promptId)}`);
  }

  editHistory(body) {
    return this.fetchApi("/history", { method: "POST", body: JSON.stringify(body),
                                       headers: { "Content-Type": "application/json" } });
  }

  /** /view URL of an output file {filename, subfolder, type}. */
  viewURL({ filename, subfolder = "", type = "output" }, extra = {}) {
    const query = new URLSearchParams({ filename, subfolder, type, ...extra });
    return this.withToken(`/view?${query}`);
  }

  /** Upload an image into input/ (or type's folder); resolves to {name, subfolder, type}. */
  uploadImage(file, { subfolder = "", type = "input", overwrite = false } = {}) {
    // The fields go first: the server picks the folder when the file part arrives.
    const form = new FormData();
    form.append("subfolder", subfolder);
    form.append("type", type);
    if (overwrite) form.append("overwrite", "true");
    form.append("image", file, file.name);
    return this.json("/upload/image", { method: "POST", body: form });
  }

  getWorkflows() {
    return this.json("/workflows");
  }

  getWorkflow(name) {
    return this.json(`/workflows/${encodeURIComponent(name)}`);
  }

  /** An API-format prompt laid out as a canvas workflow by the server. */
  apiToCanvas(prompt) {
    return this.post("/workflow/canvas", prompt);
  }

  getExtensions() {
    return this.json("/extensions");
  }

  /** {packs: {pack: {loaded, error, nodes, refused_nodes, conflicts}}, problems: [line]} */
  getPlugins() {
    return this.json("/kinema/plugins");
  }

  // -- websocket ---------------------------------------------------------------------------

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ clientId: this.clientId });
    if (this.token) query.set("token", this.token);
    const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.reconnectDelay = 250;
      this.dispatchEvent(new CustomEvent("connected"));
    });
    socket.addEventListener("message", (event) => this.onMessage(event.data));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.dispatchEvent(new CustomEvent("disconnected"));
      // Back off up to a few seconds: a restarting server comes back, and we rejoin it.
      setTimeout(() => this.connect(), this.reconnectDelay);
      this.reconnectDelay = Math.min(this.reconnectDelay * 2, MAX_RECONNECT_DELAY_MS);
    });
  }

  onMessage(data) {
    if (data instanceof ArrayBuffer) {
      const view = new DataView(data);
      if (data.byteLength < 8 || view.getUint32(0) !== PREVIEW_FRAME) return;
      const mime = IMAGE_MIME[view.getUint32(4)] || "image/jpeg";
      const blob = new Blob([data.slice(8)], { type: mime });
      this.dispatchEvent(new CustomEvent("b_preview", { detail: blob }));
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to interpret
    }
    if (message?.type) this.dispatchEvent(new CustomEvent(message.type, { detail: message.data }));
  }
}

export const api = new Api();
