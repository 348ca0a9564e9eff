// Images and videos shown inside nodes: outputs of a run, live previews of the running node,
// the image a loader has selected. Still images are drawn on the canvas; videos and animated
// images are elements kept over the node (dom.js) so they play.

import { placeElement, removeElement } from "./dom.js";

const PAD = 6;
const GRID_GAP = 4;
const MAX_AUTO_HEIGHT = 640; // a node grows to show its preview, up to this tall
const VIDEO_EXTENSIONS = /\.(mp4|webm|mov|mkv|m4v|ogv)$/i;
// Videos and these may move: shown as elements so they play (a canvas draws one still frame).
const ANIMATED_IMAGE_EXTENSIONS = /\.(gif|webp)$/i;

/** The file name a /view URL asks for. */
function viewedName(url) {
  return new URL(url, window.location.href).searchParams.get("filename") || "";
}

/** Where the preview area starts: below the node's slots and widgets. */
function previewTop(node) {
  return node.computeSize()[1] + 2;
}

/** Grow the node so a preview of this aspect ratio (h / w) fills its width. */
function growToFit(node, aspect, count = 1) {
  if (!Number.isFinite(aspect) || aspect <= 0) return;
  const width = Math.max(node.size[0], 256);
  const cols = Math.ceil(Math.sqrt(count));
  const rows = Math.ceil(count / cols);
  const height = Math.min(((width - 2 * PAD) / cols) * aspect * rows, MAX_AUTO_HEIGHT);
  node.setSize([width, Math.max(node.size[1], previewTop(node) + height + PAD)]);
  node.setDirtyCanvas(true, true);
}

function loadImage(node, url, onLoad) {
  const img = new Image();
  img.addEventListener("load", () => {
    onLoad?.(img);
    node.setDirtyCanvas(true, true);
  });
  img.src = url;
  return img;
}

function dropLive(node) {
  if (node.kinemaLiveUrl) URL.revokeObjectURL(node.kinemaLiveUrl);
  delete node.kinemaLive;
  delete node.kinemaLiveUrl;
}

function dropMedia(node) {
  if (node.kinemaMedia) removeElement(node.kinemaMedia);
  delete node.kinemaMedia;
}

/**
 * Show these image URLs in the node (replacing what it showed). A single video or animated
 * image (ComfyUI's `{images: [...], animated: [true]}` output of a video encoder) plays.
 */
export function showImages(node, urls) {
  const name = urls.length === 1 ? viewedName(urls[0]) : "";
  if (VIDEO_EXTENSIONS.test(name) || ANIMATED_IMAGE_EXTENSIONS.test(name)) {
    showMedia(node, { url: urls[0], filename: name });
    return;
  }
  dropLive(node);
  dropMedia(node);
  node.kinemaPreviewUrls = [...urls];
  node.kinemaImages = urls.map((url, i) => loadImage(node, url, (img) => {
    if (i === 0) growToFit(node, img.naturalHeight / img.naturalWidth, urls.length);
  }));
  node.setDirtyCanvas(true, true);
}

/**
 * Show a video or animated image ({url, format, filename}) playing over the node. Videos
 * loop muted (browsers only autoplay muted media); GIF/WebP play as images.
 */
export function showMedia(node, { url, format = "", filename = "" }) {
  dropLive(node);
  dropMedia(node);
  delete node.kinemaImages;
  const isVideo = format.startsWith("video/") || VIDEO_EXTENSIONS.test(filename);
  const el = document.createElement(isVideo ? "video" : "img");
  el.className = "kinema-media";
  if (isVideo) {
    Object.assign(el, { autoplay: true, loop: true, muted: true, playsInline: true });
    el.addEventListener("loadedmetadata", () => growToFit(node, el.videoHeight / el.videoWidth));
  } else {
    el.addEventListener("load", () => growToFit(node, el.naturalHeight / el.naturalWidth));
  }
  el.src = url;
  node.kinemaMedia = el;
  node.kinemaPreviewUrls = [url];
  node.setDirtyCanvas(true, true);
}

/** Show a live preview frame (a Blob from the websocket) on the running node. */
export function showLivePreview(node, blob) {
  const url = URL.createObjectURL(blob);
  loadImage(node, url, (img) => {
    if (!node.graph || node.kinemaState !== "running") { // a late frame: the node moved on
      URL.revokeObjectURL(url);
      return;
    }
    const first = !node.kinemaLive;
    dropLive(node);
    node.kinemaLive = img;
    node.kinemaLiveUrl = url;
    node.kinemaPreviewUrls = [url];
    if (first) growToFit(node, img.naturalHeight / img.naturalWidth);
  });
}

/** Forget the live preview; the node shows its images (if any) again. */
export function clearLivePreview(node) {
  if (!node.kinemaLive) return;
  dropLive(node);
  node.kinemaPreviewUrls = (node.kinemaImages || []).map((img) => img.src);
}

/** Best grid for n images of one aspect in a w x h box: [cols, rows]. */
function grid(n, aspect, w, h) {
  let best = [1, n];
  let bestScale = 0;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const scale = Math.min(w / cols, (h / rows) / aspect);
    if (scale > bestScale) [best, bestScale] = [[cols, rows], scale];
  }
  return best;
}

/** Draw the node's previews (ctx is in node-local coordinates). */
export function drawPreviews(node, ctx) {
  if (node.flags.collapsed) return;
  const top = previewTop(node);
  const w = node.size[0] - 2 * PAD;
  const h = node.size[1] - top - PAD;
  if (node.kinemaMedia) {
    placeElement(node, node.kinemaMedia, PAD, top, w, h);
    return;
  }
  const images = node.kinemaLive ? [node.kinemaLive] : (node.kinemaImages || []);
  const ready = images.filter((img) => img.complete && img.naturalWidth);
  if (!ready.length || w <= 0 || h <= 0) return;
  const aspect = ready[0].naturalHeight / ready[0].naturalWidth;
  const [cols, rows] = grid(ready.length, aspect, w, h);
  const cellW = w / cols;
  const cellH = h / rows;
  const gap = ready.length > 1 ? GRID_GAP : 0; // frames of a clip often look alike: show the cells
  ready.forEach((img, i) => {
    const scale = Math.min((cellW - gap) / img.naturalWidth, (cellH - gap) / img.naturalHeight);
    const dw = img.naturalWidth * scale;
    const dh = img.naturalHeight * scale;
    const x = PAD + (i % cols) * cellW + (cellW - dw) / 2;
    const y = top + Math.floor(i / cols) * cellH + (cellH - dh) / 2;
    ctx.drawImage(img, x, y, dw, dh);
  });
}
