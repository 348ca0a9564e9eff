// The workflow embedded in a file Kinema, ComfyUI or FFmpeg wrote, read without libraries.
//
// Every reader collects [key, text] pairs from the container's own metadata; pickWorkflow then
// prefers a canvas workflow (key "workflow") over an API prompt (key "prompt"), and classifies
// any other text (an MP4 comment, a WebP EXIF string) by its shape. Keys read, per container:
//   PNG   tEXt / zTXt / iTXt chunks, keywords "workflow" and "prompt" (SaveImage writes both)
//   MP4   moov/udta/meta/ilst and moov/meta/ilst: "mdta" keys (FFmpeg's
//         -movflags use_metadata_tags -metadata workflow=… -metadata prompt=…), "----"
//         freeform items named workflow/prompt, and ©cmt (-metadata comment=…, which may hold
//         the JSON itself or {"workflow": …, "prompt": …})
//   WebM  Segment/Tags/Tag/SimpleTag, TagName "workflow"/"prompt"/"comment" (any case: FFmpeg
//         upper-cases them), TagString the JSON
//   WebP  EXIF IFD0 strings "workflow:<json>" / "prompt:<json>" (ComfyUI's SaveAnimatedWEBP)
// When none of that yields a workflow, the bytes are scanned for a JSON object shaped like one,
// so an encoder that stores the JSON verbatim anywhere (XMP, an unknown box) still reopens.

const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

const asBytes = (data) => (data instanceof Uint8Array ? data : new Uint8Array(data));
const viewOf = (bytes) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const fourcc = (bytes, pos) => latin1.decode(bytes.subarray(pos, pos + 4));

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const isCanvasWorkflow = (v) => isObject(v) && Array.isArray(v.nodes);
export const isApiPrompt = (v) => isObject(v) && Object.keys(v).length > 0 &&
  Object.values(v).every((node) => isObject(node) && typeof node.class_type === "string");

// A value may be the JSON text, the object, or a wrapper {"workflow": …, "prompt": …}
// (VideoHelperSuite stores that in an MP4 comment), possibly with JSON inside JSON strings.
function classify(value, found, depth = 0) {
  if (typeof value === "string") value = parseJson(value.trim());
  if (!isObject(value) || depth > 3) return;
  if (isCanvasWorkflow(value)) found.workflow ??= value;
  else if (isApiPrompt(value)) found.prompt ??= value;
  else for (const key of ["workflow", "prompt"]) classify(value[key], found, depth + 1);
}

/** The canvas workflow among [key, text] entries, else the API prompt, else null. */
export function pickWorkflow(entries) {
  const rank = ([key]) => ({ workflow: 0, prompt: 1 })[key.toLowerCase()] ?? 2;
  const found = {};
  for (const [, text] of [...entries].sort((a, b) => rank(a) - rank(b))) classify(text, found);
  return found.workflow ?? found.prompt ?? null;
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** PNG text chunks as [keyword, text]; compressed zTXt/iTXt are inflated. */
export async function pngTextChunks(data) {
  const bytes = asBytes(data), view = viewOf(bytes), entries = [];
  if (bytes.length < 8 || view.getUint32(0) !== 0x89504e47 || view.getUint32(4) !== 0x0d0a1a0a) {
    return entries;
  }
  for (let pos = 8; pos + 12 <= bytes.length;) {
    const length = view.getUint32(pos), type = fourcc(bytes, pos + 4);
    const chunk = bytes.subarray(pos + 8, pos + 8 + length);
    pos += 12 + length;
    if (type === "IEND") break;
    const nul = chunk.indexOf(0);
    if (!["tEXt", "zTXt", "iTXt"].includes(type) || nul < 0) continue;
    let text = chunk.subarray(nul + 1);
    try {
      if (type === "zTXt") text = await inflate(text.subarray(1));
      if (type === "iTXt") {
        // flag, method, language\0, translated keyword\0, then the UTF-8 text.
        const language = text.indexOf(0, 2), translated = text.indexOf(0, language + 1);
        if (language < 0 || translated < 0) continue;
        const compressed = text[0] === 1;
        text = text.subarray(translated + 1);
        if (compressed) text = await inflate(text);
      }
    } catch {
      continue; // a corrupt compressed chunk is skipped, not fatal
    }
    entries.push([latin1.decode(chunk.subarray(0, nul)), utf8.decode(text)]);
  }
  return entries;
}

const MP4_CONTAINERS = new Set(["moov", "udta", "trak", "meta", "ilst"]);
const MP4_ITEM_NAMES = { "\u00a9cmt": "comment", "\u00a9nam": "title", desc: "description" };

/** MP4/MOV metadata items (ilst) as [name, text]. */
export function mp4Metadata(data) {
  const bytes = asBytes(data), view = viewOf(bytes), items = [];
  let keys = [];
  const walk = (start, end, parent, item) => {
    for (let pos = start; pos + 8 <= end;) {
      let size = view.getUint32(pos), header = 8;
      const type = fourcc(bytes, pos + 4);
      if (size === 1 && pos + 16 <= end) [size, header] = [Number(view.getBigUint64(pos + 8)), 16];
      else if (size === 0) size = end - pos;
      if (size < header || pos + size > end) return; // truncated or not a box: stop here
      const body = pos + header, boxEnd = pos + size;
      if (item) {
        // Inside one ilst item: "name" (freeform, after version/flags) and "data" (after
        // a type indicator and a locale) carry its name and value.
        if (type === "name") item.name = utf8.decode(bytes.subarray(body + 4, boxEnd));
        if (type === "data") item.text = utf8.decode(bytes.subarray(body + 8, boxEnd));
      } else if (parent === "ilst") {
        const entry = { type, index: view.getUint32(pos + 4) };
        walk(body, boxEnd, type, entry);
        items.push(entry);
      } else if (type === "keys") {
        keys = mdtaKeys(bytes, view, body, boxEnd);
      } else if (type === "meta") {
        // ISO meta is a full box (4 bytes of version/flags); QuickTime's is not.
        walk(view.getUint32(body) === 0 ? body + 4 : body, boxEnd, type);
      } else if (MP4_CONTAINERS.has(type)) {
        walk(body, boxEnd, type);
      }
      pos = boxEnd;
    }
  };
  walk(0, bytes.length, "");
  return items.filter((item) => item.text !== undefined).map((item) => [
    item.name ?? keys[item.index - 1] ?? MP4_ITEM_NAMES[item.type] ?? item.type, item.text]);
}

// The "keys" box of an mdta meta: version/flags, a count, then (size, namespace, name) each.
function mdtaKeys(bytes, view, start, end) {
  const keys = [];
  for (let pos = start + 8; pos + 8 <= end;) {
    const size = view.getUint32(pos);
    if (size < 8) break;
    keys.push(utf8.decode(bytes.subarray(pos + 8, Math.min(pos + size, end))));
    pos += size;
  }
  return keys;
}

const EBML = { SEGMENT: 0x18538067, TAGS: 0x1254c367, TAG: 0x7373, SIMPLE_TAG: 0x67c8,
  TAG_NAME: 0x45a3, TAG_STRING: 0x4487 };
const EBML_MASTERS = new Set([EBML.SEGMENT, EBML.TAGS, EBML.TAG]);

// An EBML variable-length integer: IDs keep their length marker, sizes drop it.
function vint(bytes, pos, keepMarker) {
  const first = bytes[pos];
  if (!first) return null;
  const length = Math.clz32(first) - 23;
  let value = keepMarker ? first : first & (0xff >> length);
  for (let i = 1; i < length; i++) value = value * 256 + (bytes[pos + i] ?? 0);
  return { value, length, unknown: !keepMarker && value === 2 ** (7 * length) - 1 };
}

/** Matroska/WebM SimpleTags as [TagName, TagString]. */
export function webmTags(data) {
  const bytes = asBytes(data), entries = [];
  const walk = (start, end, simple) => {
    for (let pos = start; pos < end;) {
      const id = vint(bytes, pos, true), size = id && vint(bytes, pos + id.length, false);
      if (!size) return;
      const body = pos + id.length + size.length;
      // An element of unknown size (live streams) is stepped into: its children follow.
      if (size.unknown) {
        pos = body;
        continue;
      }
      const bodyEnd = Math.min(body + size.value, end);
      if (id.value === EBML.SIMPLE_TAG) {
        const tag = {};
        walk(body, bodyEnd, tag);
        if (tag.name && tag.text !== undefined) entries.push([tag.name, tag.text]);
      } else if (EBML_MASTERS.has(id.value)) {
        walk(body, bodyEnd, simple);
      } else if (simple && id.value === EBML.TAG_NAME) {
        simple.name = utf8.decode(bytes.subarray(body, bodyEnd));
      } else if (simple && id.value === EBML.TAG_STRING) {
        simple.text = utf8.decode(bytes.subarray(body, bodyEnd));
      }
      pos = body + size.value;
    }
  };
  walk(0, bytes.length, null);
  return entries;
}

/** WebP EXIF (IFD0 "key:value" strings, as ComfyUI writes) and XMP, as [key, text]. */
export function webpMetadata(data) {
  const bytes = asBytes(data), view = viewOf(bytes), entries = [];
  if (bytes.length < 12 || fourcc(bytes, 0) !== "RIFF" || fourcc(bytes, 8) !== "WEBP") {
    return entries;
  }
  for (let pos = 12; pos + 8 <= bytes.length;) {
    const type = fourcc(bytes, pos), size = view.getUint32(pos + 4, true);
    const chunk = bytes.subarray(pos + 8, pos + 8 + size);
    pos += 8 + size + (size & 1);
    if (type === "EXIF") entries.push(...exifStrings(chunk));
    if (type === "XMP ") entries.push(...scanForJson(chunk));
  }
  return entries;
}

/** GIF comment extensions (Kinema's encoder writes its workflow into one), as [key, text]. */
export function gifComments(data) {
  const bytes = asBytes(data), entries = [];
  if (bytes.length < 13 || fourcc(bytes, 0) !== "GIF8") return entries;
  const colourTable = (flags) => (flags & 0x80 ? 3 * 2 ** ((flags & 7) + 1) : 0);
  // Data sub-blocks (a size byte, then that many bytes) up to a zero: [their bytes if
  // kept, the position after them]. Image data is only skipped.
  const subBlocks = (pos, keep) => {
    const parts = [];
    while (pos < bytes.length && bytes[pos] !== 0) {
      if (keep) parts.push(...bytes.subarray(pos + 1, pos + 1 + bytes[pos]));
      pos += 1 + bytes[pos];
    }
    return [Uint8Array.from(parts), pos + 1];
  };
  let pos = 13 + colourTable(bytes[10]);
  while (pos < bytes.length) {
    if (bytes[pos] === 0x21) { // an extension: its label, then sub-blocks
      const comment = bytes[pos + 1] === 0xfe;
      const [body, next] = subBlocks(pos + 2, comment);
      if (comment) entries.push(["comment", utf8.decode(body)]);
      pos = next;
    } else if (bytes[pos] === 0x2c) { // an image: descriptor, colours, LZW size, sub-blocks
      pos = subBlocks(pos + 10 + colourTable(bytes[pos + 9]) + 1, false)[1];
    } else {
      break; // the trailer (0x3b), or damage
    }
  }
  return entries;
}

function exifStrings(chunk) {
  const tiff = latin1.decode(chunk.subarray(0, 6)) === "Exif\0\0" ? chunk.subarray(6) : chunk;
  const view = viewOf(tiff), little = fourcc(tiff, 0).startsWith("II"), entries = [];
  if (tiff.length < 8) return entries;
  const ifd = view.getUint32(4, little);
  const count = ifd + 2 <= tiff.length ? view.getUint16(ifd, little) : 0;
  for (let i = 0; i < count && ifd + 14 + 12 * i <= tiff.length; i++) {
    const entry = ifd + 2 + 12 * i;
    const type = view.getUint16(entry + 2, little), length = view.getUint32(entry + 4, little);
    if (type !== 2 && type !== 7) continue; // ASCII or UNDEFINED
    const at = length <= 4 ? entry + 8 : view.getUint32(entry + 8, little);
    const text = utf8.decode(tiff.subarray(at, at + length)).replace(/\0+$/, "");
    const match = /^(\w+):([\s\S]*)$/.exec(text);
    entries.push(match ? [match[1], match[2]] : ["exif", text]);
  }
  return entries;
}

// The end of the JSON object opening at `start`, or -1 when the bytes cannot be JSON (a
// control byte outside whitespace ends the attempt at once, so binary data is cheap to skip).
function objectEnd(bytes, start) {
  let depth = 0, inString = false, escaped = false;
  for (let i = start; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (b === 0x5c) escaped = true;
      else if (b === 0x22) inString = false;
      else if (b < 0x20) return -1;
    } else if (b === 0x22) inString = true;
    else if (b === 0x7b) depth++;
    else if (b === 0x7d && --depth === 0) return i + 1;
    else if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return -1;
  }
  return -1;
}

/** JSON objects shaped like a workflow or prompt anywhere in the bytes, as [key, text]. */
export function scanForJson(data) {
  const bytes = asBytes(data), entries = [];
  for (let i = bytes.indexOf(0x7b); i >= 0 && i < bytes.length; i = bytes.indexOf(0x7b, i + 1)) {
    if (bytes[i + 1] !== 0x22 && bytes[i + 1] !== 0x20 && bytes[i + 1] !== 0x0a) continue;
    const end = objectEnd(bytes, i);
    if (end < 0) continue;
    const found = {};
    classify(utf8.decode(bytes.subarray(i, end)), found);
    if (found.workflow) return [["workflow", JSON.stringify(found.workflow)]];
    if (found.prompt) {
      entries.push(["prompt", JSON.stringify(found.prompt)]);
      i = end - 1; // a prompt's inner objects are its nodes, not another workflow
    }
  }
  return entries;
}

// A container reader, then the byte scan when the container is malformed or has no workflow.
const withScan = (read) => async (data) => {
  let entries = [];
  try {
    entries = await read(data);
  } catch {
    // Offsets pointing outside the file: a damaged or truncated container.
  }
  return pickWorkflow(entries) ?? pickWorkflow(scanForJson(data));
};

/** Each takes an ArrayBuffer (or Uint8Array) and resolves to the workflow or null. */
export const workflowFromPng = withScan(pngTextChunks);
export const workflowFromMp4 = withScan(mp4Metadata);
export const workflowFromWebm = withScan(webmTags);
export const workflowFromWebp = withScan(webpMetadata);
export const workflowFromGif = withScan(gifComments);

// Files larger than this are read as their first and last parts: container metadata lives
// at one end (MP4 moov, Matroska Tags), and reading gigabytes of frames would stall the page.
const WHOLE_FILE_LIMIT = 256 * 2 ** 20;
const END_PART = 32 * 2 ** 20;

function readerFor(head) {
  if (head.length >= 8 && viewOf(head).getUint32(0) === 0x89504e47) return workflowFromPng;
  if (fourcc(head, 0) === "RIFF" && fourcc(head, 8) === "WEBP") return workflowFromWebp;
  if (fourcc(head, 0) === "GIF8") return workflowFromGif;
  if (viewOf(head).getUint32(0) === 0x1a45dfa3) return workflowFromWebm;
  if (["ftyp", "moov", "mdat", "free", "wide"].includes(fourcc(head, 4))) return workflowFromMp4;
  return null;
}

/** The workflow (canvas JSON, else API prompt) a dropped or opened File carries, or null. */
export async function workflowFromFile(file) {
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  if (head.length < 12) return null;
  const reader = readerFor(head);
  if (!reader) {
    if (file.size > WHOLE_FILE_LIMIT) return null;
    const found = {};
    classify(await file.text(), found); // a workflow JSON file (either format)
    return found.workflow ?? found.prompt ?? null;
  }
  if (file.size <= WHOLE_FILE_LIMIT) return reader(await file.arrayBuffer());
  for (const part of [file.slice(file.size - END_PART), file.slice(0, END_PART)]) {
    const found = await reader(await part.arrayBuffer());
    if (found) return found;
  }
  return null;
}
