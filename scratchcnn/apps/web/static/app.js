// The demo page: draw or upload, send the image to /api/predict, show what comes back.
// Plain JavaScript, no libraries and no build step, so the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const state = {
  models: [], model: null,   // the served models and the chosen id
  upload: null,              // the uploaded File while the canvas shows it unchanged
  inked: false,              // whether the canvas holds anything to classify
  last: null,                // the last answer and the data: URL of the image it was computed from
  unit: null,                // the feature-map pixel last clicked: {layer, channel, row, col}
  seq: 0,                    // number of the newest change (input or model); only its answer is shown
  input: 0,                  // number of the newest input (a stroke begun, a clear, a file chosen)
  timer: null,
};
const DEBOUNCE_MS = 120;     // while drawing, at most one request per pause this long

// ---------------------------------------------------------------- models and the model card
async function loadModels() {
  const answer = await fetch("/api/models");
  state.models = await answer.json();
  const select = $("model");
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = `${m.id}${m.test_accuracy != null ? ` (${(100 * m.test_accuracy).toFixed(1)}%)` : ""}`;
    select.append(option);
  }
  $("model-chooser").hidden = state.models.length < 2;
  chooseModel(state.models[0].id);
  select.addEventListener("change", () => { chooseModel(select.value); schedule(0); });
}

function chooseModel(id) {
  state.model = id;
  $("model").value = id;
  const m = state.models.find((x) => x.id === id);
  const facts = [
    ["model", m.id], ["data set", m.dataset ?? "?"], ["network", m.preset ?? "custom"],
    ["input", m.input_shape.join("\u00d7")], ["parameters", m.parameters.toLocaleString("en")],
    ["test accuracy", m.test_accuracy != null
      ? `${(100 * m.test_accuracy).toFixed(2)}% of ${(m.test_images ?? 0).toLocaleString("en")} images` : "not recorded"],
    ["trained", m.epochs != null ? `${m.epochs} epoch(s) on ${(m.train_images ?? 0).toLocaleString("en")} images` : "?"],
    ["classes", m.class_names.join(", ")], ["file", m.file],
  ];
  $("card-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  $("card-summary").textContent = m.summary;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// ---------------------------------------------------------------- drawing (mouse, touch, pen)
function clearCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  state.inked = false;
  state.upload = null;
}

let drawing = null;  // the pointer id of the stroke in progress
function position(e) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height];
}
function brush(e) {
  const size = Number($("brush").value);
  return e.pointerType === "pen" && e.pressure > 0 ? size * (0.4 + e.pressure) : size;
}
canvas.addEventListener("pointerdown", (e) => {
  drawing = e.pointerId;
  canvas.setPointerCapture(e.pointerId);
  state.upload = null;  // the canvas now differs from the uploaded file
  state.input++;        // a file still being decoded must not cover this stroke
  const [x, y] = position(e);
  ctx.beginPath();
  ctx.fillStyle = "#000";
  ctx.arc(x, y, brush(e) / 2, 0, 2 * Math.PI);
  ctx.fill();
  ctx.beginPath();
  ctx.moveTo(x, y);
  state.inked = true;
  e.preventDefault();
});
canvas.addEventListener("pointermove", (e) => {
  if (drawing !== e.pointerId) return;
  const [x, y] = position(e);
  ctx.lineWidth = brush(e);
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  ctx.lineTo(x, y);
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x, y);
  schedule(DEBOUNCE_MS);
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, (e) => {
    if (drawing !== e.pointerId) return;
    drawing = null;
    schedule(0);
  });
}
$("clear").addEventListener("click", () => {
  clearCanvas();
  state.input++;
  change();  // an answer in flight belongs to the old drawing
  busy(false);
  showAnswer(null);
  $("top").textContent = "Draw something.";
  $("bars").replaceChildren();
  showError(null);
});

// ---------------------------------------------------------------- upload: file picker and drag-and-drop
async function useFile(file) {
  if (!file) return;
  // The page is busy from now on, and an answer in flight (say, for the drawing) is stale: else it
  // could arrive while the file decodes and be shown as the answer to the upload.
  change();
  const input = ++state.input;
  showError(null);
  try {
    const bitmap = await createImageBitmap(file);
    if (input !== state.input) return;  // a newer file, stroke or clear came while this one decoded
    clearCanvas();
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.imageSmoothingEnabled = scale < 1;  // small images (28x28) stay sharp squares
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  } catch (err) {
    if (input !== state.input) return;
    clearCanvas();  // the browser cannot show it; the server still says what it makes of it
  }
  state.upload = file;   // the server gets the file itself, so it sees what scratchcnn.predict would
  state.inked = true;
  schedule(0);
}
$("file").addEventListener("change", (e) => { useFile(e.target.files[0]); e.target.value = ""; });
const zone = $("dropzone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  useFile(e.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- prediction
// Each change of the input or the model takes the next number (body[data-seq]); a request carries the
// number of the change it answers, and its answer is shown only while that number is still the newest,
// so an answer that arrives after a later change is dropped, whatever order the answers come back in.
// body[data-busy] is "1" from a change until its answer (or error) is shown; #top's data-seq,
// data-source ("drawing" or "file:NAME") and data-model say which request the shown answer belongs to.
// Tests and styles read these attributes.
function busy(flag) { document.body.dataset.busy = flag ? "1" : "0"; }

function change() {
  clearTimeout(state.timer);
  state.seq++;
  document.body.dataset.seq = String(state.seq);
  busy(true);
  return state.seq;
}

function schedule(delay) {
  const seq = change();
  state.timer = setTimeout(() => predict(seq), delay);
}

// Marks on #top which request the shown answer belongs to, and its top class; null: none is shown.
function showAnswer(request, name) {
  const head = $("top");
  for (const key of ["class", "seq", "source", "model"]) delete head.dataset[key];
  if (request) Object.assign(head.dataset, { class: name, seq: String(request.seq), source: request.source, model: request.model });
}

function dataURL(blob) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.readAsDataURL(blob);
  });
}

async function predict(seq) {
  if (seq !== state.seq) return;
  if (!state.inked) { busy(false); return; }
  // What to send is fixed now: the input and the model may change while the request is in flight.
  const file = state.upload, model = state.model;
  const request = { seq, model, source: file ? `file:${file.name}` : "drawing" };
  const blob = file ?? await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));  // copies the canvas now
  const form = new FormData();
  form.append("image", blob, file ? file.name : "drawing.png");
  form.append("model", model);
  form.append("top_k", "5");
  form.append("details", "true");
  let answer;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    answer = await response.json();
    if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
  } catch (err) {
    if (seq === state.seq) { showError(`${err.message}`); busy(false); }
    return;
  }
  const image = await dataURL(blob);
  if (seq !== state.seq) return;  // the input or the model changed meanwhile: a newer request is on its way
  showError(null);
  state.last = { answer, image, model };
  render(answer);
  showAnswer(request, answer.classes[0].name);
  busy(false);
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function render(a) {
  const top = a.classes[0];
  const head = $("top");
  head.replaceChildren(el("span", top.name, "name"), el("span", `${(100 * top.probability).toFixed(1)}%`, "prob"));
  $("bars").replaceChildren(...a.classes.map((c) => {
    const li = el("li");
    const bar = el("div", null, "bar");
    const fill = el("span");
    fill.style.width = `${(100 * c.probability).toFixed(1)}%`;
    bar.append(fill);
    li.append(el("span", c.name, "name"), bar, el("span", `${(100 * c.probability).toFixed(1)}%`, "p"));
    return li;
  }));
  $("input-img").src = a.input.png;
  $("input-under").src = a.input.png;
  $("input-size").textContent = `${a.input.shape[1]}\u00d7${a.input.shape[2]}${a.inverted ? ", inverted" : ""}`;
  $("saliency-img").src = a.saliency.png;
  $("saliency-caption").textContent = `saliency for \u201c${a.saliency.class}\u201d: |\u2202logit / \u2202pixel|`;
  $("patch-box").hidden = true;
  renderLayers(a.layers);
  // Keep the clicked unit in view: its numbers change with the image.
  const u = state.unit && a.layers.find((layer) => layer.name === state.unit.layer);
  if (u && state.unit.channel < u.shape[0] && state.unit.row < u.shape[1] && state.unit.col < u.shape[2]) {
    selectUnit(u, state.unit.channel, state.unit.row, state.unit.col);
  } else if (state.unit) {
    state.unit = null;
    $("unit-body").replaceChildren(el("p", "Click a pixel of a feature map.", "hint"));
  }
}

function selectUnit(layer, channel, row, col) {
  const { cols, h, w, gap } = layer.layout;
  const grid = document.querySelector(`.grid[data-layer="${layer.name}"]`);
  const gx = channel % cols, gy = Math.floor(channel / cols);
  mark(grid, Number(grid.dataset.scale), gx * (w + gap) + col, gy * (h + gap) + row);
  state.unit = { layer: layer.name, channel, row, col };
  explainUnit(layer, channel, row, col);
}

function renderLayers(layers) {
  const box = $("layers");
  box.replaceChildren(...layers.map((layer) => {
    const { cols, rows, h, w, gap } = layer.layout;
    const width = cols * (w + gap) - gap, height = rows * (h + gap) - gap;
    const scale = Math.max(1, Math.floor(440 / width));
    const div = el("div", null, "layer");
    const title = el("h3", layer.name);
    const what = { conv: "after ReLU", pool: "max-pool", block: "residual block: relu(main + shortcut)" }[layer.kind];
    title.append(el("small", ` ${what}, ${layer.shape[0]} maps of ${layer.shape[1]}\u00d7${layer.shape[2]}`));
    const grid = el("div", null, "grid");
    grid.dataset.layer = layer.name;
    grid.dataset.scale = scale;
    const img = el("img");
    img.src = layer.png;
    img.alt = `${layer.name} feature maps`;
    img.width = width * scale;
    img.height = height * scale;
    grid.append(img);
    if (layer.kind !== "block") grid.addEventListener("click", (e) => {  // a block's unit has no breakdown
      const box = img.getBoundingClientRect();
      const x = Math.floor((e.clientX - box.left) / scale), y = Math.floor((e.clientY - box.top) / scale);
      const gx = Math.floor(x / (w + gap)), gy = Math.floor(y / (h + gap));
      const col = x - gx * (w + gap), row = y - gy * (h + gap);
      const channel = gy * cols + gx;
      if (col >= w || row >= h || channel >= layer.shape[0]) return;  // a gap between maps
      selectUnit(layer, channel, row, col);
    });
    div.append(title, grid);
    return div;
  }));
}

function mark(grid, scale, x, y) {
  for (const old of document.querySelectorAll(".layer .mark")) old.remove();
  const m = el("div", null, "mark");
  Object.assign(m.style, { left: `${x * scale - 2}px`, top: `${y * scale - 2}px`,
    width: `${scale + 4}px`, height: `${scale + 4}px` });
  grid.append(m);
}

// ---------------------------------------------------------------- how one number is computed
async function explainUnit(layer, channel, row, col) {
  if (!state.last) return;
  const seq = state.unitSeq = (state.unitSeq || 0) + 1;
  document.body.dataset.unit = "loading";
  const body = { image: state.last.image, model: state.last.model, layer: layer.name, channel, row, col };
  const response = await fetch("/api/unit", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify(body) });
  const u = await response.json();
  if (seq !== state.unitSeq) return;  // another pixel was clicked meanwhile
  document.body.dataset.unit = response.ok ? `${layer.name}:${channel}:${row}:${col}` : "error";
  if (!response.ok) { showError(typeof u.detail === "string" ? u.detail : JSON.stringify(u.detail)); return; }
  const out = $("unit-body");
  const where = `${layer.name}, channel ${channel}, row ${row}, column ${col}`;
  if (layer.kind === "pool") {
    out.replaceChildren(el("p", `${where}: the largest of a ${u.window.length}\u00d7${u.window.length} window of ` +
      `${u.input_layer} (rows ${u.origin[0]}\u2013${u.origin[0] + u.window.length - 1}, columns ` +
      `${u.origin[1]}\u2013${u.origin[1] + u.window[0].length - 1}) wins:`, "formula"),
      numbers(u.window, u.winner), el("p", `max = ${fmt(u.output)} (the network computed ${fmt(u.framework_output)})`, "formula"));
    $("patch-box").hidden = true;
    return;
  }
  const k = u.kernels[0].length;
  const formula = el("p", null, "formula");
  let text = `${where}: \u03a3 patch \u00d7 kernel = ${fmt(u.sum)}; + bias ${fmt(u.bias)} = ${fmt(u.output)}`;
  for (const [name, kind, value] of u.after) text += `; ${kind === "ReLU" ? "ReLU max(0, \u00b7)" : kind} \u2192 ${fmt(value)}`;
  formula.textContent = text;
  const note = el("p", `Input patch: ${k}\u00d7${k} at row ${u.origin[0]}, column ${u.origin[1]} of ${u.input_layer}` +
    ` (stride ${u.stride}, padding ${u.padding}: outside the input counts 0), over ${u.patch.length} channel(s).` +
    " Each row: patch \u00d7 kernel = products, summed.", "hint");
  const list = el("div", null, "channels");
  u.patch.forEach((patch, i) => {
    const row = el("div", null, "channel");
    row.append(el("span", `in ${i}`, "label"), numbers(patch), el("span", "\u00d7", "op"), numbers(u.kernels[i]),
      el("span", "=", "op"), numbers(u.products[i]), el("span", `\u03a3 ${fmt(u.channel_sums[i])}`, "op"));
    list.append(row);
  });
  out.replaceChildren(formula, note, list);
  // On the first convolution the patch lies on the input image: frame it there.
  const box = $("patch-box");
  box.hidden = u.input_layer !== "input";
  if (!box.hidden) {
    const n = state.last.answer.input.shape[1];
    Object.assign(box.style, { left: `${100 * u.origin[1] / n}%`, top: `${100 * u.origin[0] / n}%`,
      width: `${100 * k / n}%`, height: `${100 * k / n}%` });
  }
}

function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2); }

function numbers(matrix, winner) {
  const top = Math.max(1e-12, ...matrix.flat().map(Math.abs));
  const table = el("table", null, "num");
  matrix.forEach((line, r) => {
    const tr = el("tr");
    line.forEach((v, c) => {
      const td = el("td", fmt(v));
      const a = Math.min(1, Math.abs(v) / top) * 0.55;
      td.style.background = v >= 0 ? `rgba(217, 83, 79, ${a})` : `rgba(47, 111, 237, ${a})`;
      if (winner && winner[0] === r && winner[1] === c) td.className = "win";
      tr.append(td);
    });
    table.append(tr);
  });
  return table;
}

clearCanvas();
document.body.dataset.seq = "0";
busy(false);
loadModels().catch((err) => showError(`cannot list the models: ${err.message}`));
