// The wardrobe page: the AE's and the VAE's latent planes side by side, the garment each
// decoder sews at the pointer (ONNX decoders run by onnxruntime-web, in this page), and the
// garments along the line between two pinned points.
"use strict";

const MODELS = ["ae", "vae"];
const STEPS = 12; // garments along the line between two pins
const COLOURS = [ // matplotlib's tab10, as the figures colour the classes
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

const explore = {
  models: {},      // name -> {data, session, view, dims, rest}
  decoded: {},     // name -> the last garment at the pointer (Float32Array, 32 x 32)
  pointer: null,   // the latent point under the pointer (full vector, per model)
  pins: [],        // up to two pinned points: {name, z (the plane's two coordinates)}
  line: {},        // name -> the garments along the line (Float32Array each)
  timings: {},
  errors: [],
};
window.explore = explore;

function status(text, error = false) {
  const line = document.getElementById("status");
  line.textContent = text;
  line.classList.toggle("error", error);
  if (error) {
    explore.errors.push(text);
    console.error(text);
  }
}

async function fetchJSON(url) {
  const answer = await fetch(url);
  if (!answer.ok) throw new Error(`${url}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

// --- decoding -------------------------------------------------------------------------

// Latent vectors (arrays of latent_dim numbers) -> garments (Float32Array of 32 x 32 each).
async function decode(name, vectors) {
  const model = explore.models[name];
  const dim = model.data.latent_dim;
  const flat = new Float32Array(vectors.length * dim);
  vectors.forEach((v, i) => flat.set(v, i * dim));
  const input = new ort.Tensor("float32", flat, [vectors.length, dim]);
  const output = await model.session.run({[model.data.onnx.input]: input});
  const pixels = output[model.data.onnx.output].data;
  const size = model.data.image_shape[0] * model.data.image_shape[1];
  return vectors.map((_, i) => pixels.slice(i * size, (i + 1) * size));
}
explore.decode = decode;

// The full latent vector of a model at a point of its plane: the plane's two chosen
// dimensions, the sliders' values for the others.
function vectorAt(name, xy) {
  const model = explore.models[name];
  const z = model.rest.slice();
  z[model.dims[0]] = xy[0];
  z[model.dims[1]] = xy[1];
  return z;
}

// --- drawing --------------------------------------------------------------------------

function paint(canvas, pixels, side) {
  const small = document.createElement("canvas");
  small.width = small.height = side;
  const context = small.getContext("2d");
  const image = context.createImageData(side, side);
  for (let i = 0; i < side * side; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, pixels[i])));
    image.data.set([v, v, v, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// The plane's view: a square around the codes and the grid's region, in the chosen dims.
function fitView(name) {
  const model = explore.models[name];
  const [a, b] = model.dims;
  const data = model.data;
  let lo = [Math.min(data.low[a], data.grid.x[0]), Math.min(data.low[b], data.grid.y[0])];
  let hi = [Math.max(data.high[a], data.grid.x[1]), Math.max(data.high[b], data.grid.y[1])];
  if (data.variational) { // N(0, I)'s 3-sigma circle stays in view
    lo = lo.map((v) => Math.min(v, -3.2));
    hi = hi.map((v) => Math.max(v, 3.2));
  }
  const half = 1.05 * Math.max(hi[0] - lo[0], hi[1] - lo[1]) / 2;
  const centre = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2];
  model.view = {centre, half};
}

function toScreen(name, xy) {
  const {view, plane} = explore.models[name];
  const scale = plane.width / (2 * view.half);
  return [(xy[0] - view.centre[0] + view.half) * scale,
          (view.centre[1] + view.half - xy[1]) * scale];
}
explore.toScreen = toScreen;

function fromScreen(name, px) {
  const {view, plane} = explore.models[name];
  const scale = (2 * view.half) / plane.width;
  return [view.centre[0] - view.half + px[0] * scale, view.centre[1] + view.half - px[1] * scale];
}

// The plane's fixed layer (the codes, the grid's region, N(0, I)'s contours), drawn once per
// view into an offscreen canvas: the pointer redraws only what moves.
function drawLayer(name) {
  const model = explore.models[name];
  const {plane, data, dims} = model;
  const layer = document.createElement("canvas");
  layer.width = plane.width;
  layer.height = plane.height;
  const context = layer.getContext("2d");
  context.globalAlpha = 0.55;
  data.codes.forEach((code, i) => {
    const [x, y] = toScreen(name, [code[dims[0]], code[dims[1]]]);
    context.fillStyle = COLOURS[data.labels[i] % 10];
    context.fillRect(x - 1, y - 1, 2, 2);
  });
  context.globalAlpha = 1;
  context.setLineDash([4, 4]);
  context.strokeStyle = "#444";
  if (dims[0] === 0 && dims[1] === 1) { // the region the latent-grid figure spans
    const [x0, y0] = toScreen(name, [data.grid.x[0], data.grid.y[1]]);
    const [x1, y1] = toScreen(name, [data.grid.x[1], data.grid.y[0]]);
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (data.variational) { // N(0, I)'s 1, 2 and 3 sigma contours
    const [cx, cy] = toScreen(name, [0, 0]);
    const unit = toScreen(name, [1, 0])[0] - cx;
    for (const k of [1, 2, 3]) {
      context.beginPath();
      context.arc(cx, cy, k * unit, 0, 2 * Math.PI);
      context.stroke();
    }
  }
  model.layer = layer;
}

function drawPlane(name) {
  const model = explore.models[name];
  const {plane} = model;
  const context = plane.getContext("2d");
  context.clearRect(0, 0, plane.width, plane.height);
  context.drawImage(model.layer, 0, 0);
  const pins = explore.pins.map((p) => toScreen(name, p.xy));
  if (pins.length === 2) {
    context.strokeStyle = "#000";
    context.lineWidth = 2;
    context.beginPath();
    context.moveTo(...pins[0]);
    context.lineTo(...pins[1]);
    context.stroke();
    context.lineWidth = 1;
  }
  context.fillStyle = "#000";
  pins.forEach(([x, y]) => context.fillRect(x - 4, y - 4, 8, 8));
  if (explore.pointer) {
    const [x, y] = toScreen(name, explore.pointer);
    context.strokeStyle = "#d00";
    context.lineWidth = 2;
    context.beginPath();
    context.moveTo(x - 9, y); context.lineTo(x + 9, y);
    context.moveTo(x, y - 9); context.lineTo(x, y + 9);
    context.stroke();
    context.lineWidth = 1;
  }
}

// --- the pointer, the pins, the line --------------------------------------------------

let pending = null;
let busy = false;

// Decode the plane point xy with both models (the same coordinates in each plane's chosen
// dimensions), at most one decoding at a time: the latest point wins.
async function pointAt(xy) {
  pending = xy;
  if (busy) return;
  busy = true;
  try {
    while (pending) {
      const at = pending;
      pending = null;
      explore.pointer = at;
      const garments = await Promise.all(MODELS.map((n) => decode(n, [vectorAt(n, at)])));
      MODELS.forEach((n, i) => {
        const model = explore.models[n];
        explore.decoded[n] = garments[i][0];
        paint(model.garment, garments[i][0], model.data.image_shape[0]);
        model.caption.textContent = `z = (${vectorAt(n, at).map((v) => v.toFixed(2)).join(", ")})`;
        drawPlane(n);
      });
      explore.pointed = (explore.pointed || 0) + 1;
    }
  } catch (error) {
    status(`decoding failed: ${error.message}`, true);
  } finally {
    busy = false;
  }
}
explore.pointAt = pointAt;

async function drawLine() {
  const [a, b] = explore.pins.map((p) => p.xy);
  const points = [];
  for (let i = 0; i < STEPS; i++) {
    const t = i / (STEPS - 1);
    points.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
  }
  for (const name of MODELS) {
    const model = explore.models[name];
    const garments = await decode(name, points.map((p) => vectorAt(name, p)));
    explore.line[name] = garments;
    const strip = document.querySelector(`.strip[data-model="${name}"]`);
    strip.replaceChildren(...garments.map((g) => {
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = 64;
      paint(canvas, g, model.data.image_shape[0]);
      return canvas;
    }));
  }
}

async function pin(xy) {
  if (explore.pins.length === 2) explore.pins = [];
  explore.pins.push({xy});
  if (explore.pins.length === 2) {
    try {
      await drawLine();
    } catch (error) {
      status(`decoding the line failed: ${error.message}`, true);
    }
  } else {
    MODELS.forEach((n) => document.querySelector(`.strip[data-model="${n}"]`).replaceChildren());
  }
  MODELS.forEach(drawPlane);
}
explore.pin = pin;

function planeEvents(name) {
  const {plane} = explore.models[name];
  const at = (event) => // offsetX/Y: from the canvas' content edge, inside its border
    fromScreen(name, [event.offsetX * plane.width / plane.clientWidth,
                      event.offsetY * plane.height / plane.clientHeight]);
  plane.addEventListener("pointermove", (event) => pointAt(at(event)));
  plane.addEventListener("click", (event) => pin(at(event)));
}

// For a latent size above 2: which two dimensions the plane shows, sliders for the others.
function dimsControls(name) {
  const model = explore.models[name];
  const {data} = model;
  const box = model.section.querySelector(".dims");
  if (data.latent_dim <= 2) return;
  const redraw = () => {
    fitView(name);
    drawLayer(name);
    drawPlane(name);
    if (explore.pointer) pointAt(explore.pointer);
  };
  for (const axis of [0, 1]) {
    const label = document.createElement("label");
    label.textContent = `${axis ? "vertical" : "horizontal"}: z`;
    const select = document.createElement("select");
    select.className = `dim${axis}`;
    for (let d = 0; d < data.latent_dim; d++) select.add(new Option(String(d), String(d)));
    select.value = String(model.dims[axis]);
    select.addEventListener("change", () => {
      model.dims[axis] = Number(select.value);
      buildSliders();
      redraw();
    });
    label.append(select);
    box.append(label);
  }
  const sliders = document.createElement("div");
  sliders.className = "sliders";
  box.append(sliders);
  function buildSliders() {
    sliders.replaceChildren();
    for (let d = 0; d < data.latent_dim; d++) {
      if (model.dims.includes(d)) continue;
      const label = document.createElement("label");
      label.textContent = `z${d} `;
      const slider = document.createElement("input");
      slider.type = "range";
      const spread = data.variational ? 3 : 3 * data.std[d];
      const centre = data.variational ? 0 : data.mean[d];
      slider.min = String(centre - spread);
      slider.max = String(centre + spread);
      slider.step = String(spread / 100);
      slider.value = String(model.rest[d]);
      slider.dataset.dim = String(d);
      slider.addEventListener("input", () => {
        model.rest[d] = Number(slider.value);
        if (explore.pointer) pointAt(explore.pointer);
      });
      label.append(slider);
      sliders.append(label);
    }
  }
  buildSliders();
}

// --- start ----------------------------------------------------------------------------

async function start() {
  const began = performance.now();
  ort.env.wasm.wasmPaths = "/ort/";
  ort.env.wasm.numThreads = 1; // no cross-origin isolation needed; one garment is tiny work
  ort.env.wasm.proxy = false;
  const loaded = await Promise.all(MODELS.map(async (name) => {
    const data = await fetchJSON(`/data/${name}.json`);
    const session = await ort.InferenceSession.create(`/data/${data.onnx.file}`,
                                                      {executionProviders: ["wasm"]});
    return {name, data, session};
  }));
  for (const {name, data, session} of loaded) {
    const section = document.getElementById(name);
    const model = {
      data, session, section,
      plane: section.querySelector(".plane"),
      garment: section.querySelector(".garment"),
      caption: section.querySelector(".at"),
      dims: [0, 1],
      // the other dimensions as the latent-grid figure fixes them: the prior's centre for
      // the VAE, the embeddings' mean for the AE
      rest: data.variational ? new Array(data.latent_dim).fill(0) : data.mean.slice(),
    };
    explore.models[name] = model;
    const version = data.version ? `, registered version ${data.version}` : "";
    section.querySelector(".about").textContent = (data.variational
      ? `β ${data.beta}, latent size ${data.latent_dim}` : `latent size ${data.latent_dim}`)
      + `; ${data.codes.length} test images' codes${data.variational ? " (z_mean)" : ""}`
      + `${version}`;
    fitView(name);
    drawLayer(name);
    dimsControls(name);
    drawPlane(name);
    planeEvents(name);
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren(...loaded[0].data.classes.map((c, i) => {
    const item = document.createElement("li");
    item.textContent = c;
    item.style.setProperty("--colour", COLOURS[i]);
    return item;
  }));
  // the first garments: each model at the origin of its plane
  await pointAt([0, 0]);
  explore.timings.ready = performance.now() - began;
  explore.timings.sinceNavigation = performance.now();
  status("Point at either plane: both decoders sew the garment at that point. " +
         "Dashed: the region of the latent-grid figures and the VAE's N(0, I) at 1, 2, 3 σ.");
}

explore.ready = start().then(() => true, (error) => {
  status(`the page could not start: ${error.message}`, true);
  return false;
});
