// Steering in the detail view (serve/routes/page_parts.py; loaded after studio.js, whose helpers
// it uses): a slider for every direction /directions.json lists, the product in another colour
// (/colourways.json), and a strip along one slider (/strip.png). An edited image is not made here
// but named, `BASE^size=1,main2=-0.5`, and shown through /named.png like every other image, so
// that the name copied gives the same pixels in the API, the command line and Python. Until
// `productgan directions RUN` has measured the directions, the section says so in one line.
"use strict";

// The swatches: a dozen colour names round the hue circle, then black and grey (the names are the
// API's, /directions.json's colour_names; a grey generator is offered its greys instead).
const SWATCHES = [
  "red", "orange", "mustard", "olive", "green", "teal", "sky", "denim", "navy", "indigo", "purple", "pink",
  "black", "grey",
];
const SLIDER_LIMIT = 2;
const PREVIEW_DELAY = 250; // ms a slider rests before its image is asked for
const STRIP_AMOUNTS = [-2, -1, 0, 1, 2];
const EDITED = /^(.+)\^([^~^]*)$/; // a name that ends in edits (explore/names.py's EditedName)
const EDIT = /^\s*([A-Za-z][A-Za-z0-9_]{0,31})\s*=\s*([^,=]{1,32}?)\s*$/;

let listing = null; // the answer of /directions.json, asked for once
let base = ""; // the image steered: the opened name without the edits it ends in
let baseLabel = "";
let fixed = []; // [name, amount as written] of the opened name's edits no slider can show, kept first
let previewTimer = 0;
let colourAsked = 0; // the latest colourway asked for: an older answer that comes late is dropped
let colourway = null;

// A slider's amount as the API writes it (explore/names.py: "1", "-0.5", "0.3").
const amountText = (value) => String(Math.round(Number(value) * 10) / 10);
const sliders = () => [...$("sliders").querySelectorAll("input[type=range]")];
const shownName = (name) => (isLong(base) ? `${base.slice(0, 14)}…${name.slice(base.length)}` : name);

function directions() {
  listing ??= request(url("/directions.json")).then((response) => response.json());
  listing.catch(() => { listing = null; }); // asked again at the next image
  return listing;
}

// The edits of the sliders, after those of the opened name that no slider shows; `without`: leave
// that direction out (a strip along it).
function edits(without) {
  return [
    ...fixed.filter(([name]) => name !== without).map(([name, amount]) => `${name}=${amount}`),
    ...sliders()
      .filter((input) => Number(input.value) !== 0 && input.dataset.direction !== without)
      .map((input) => `${input.dataset.direction}=${amountText(input.value)}`),
  ].join(",");
}

const steered = (without) => {
  const written = edits(without);
  return written ? `${base}^${written}` : base;
};

detail.addEventListener("image-opened", async (event) => {
  const { name, label } = event.detail;
  let listed;
  try {
    listed = await directions();
  } catch (error) {
    $("steering").hidden = true;
    $("steering-status").textContent = error.message;
    return;
  }
  if (name !== current) return; // another image was opened meanwhile
  if (!listed.measured) {
    $("steering").hidden = true;
    $("steering-status").replaceChildren(
      "Sliders and colours need this generator's directions measured: run ",
      code("productgan directions RUN"), " once, then start ", code("productgan serve"), " again.",
    );
    return;
  }
  build(listed);
  steer(name, label);
});

function code(text) {
  const element = document.createElement("code");
  element.textContent = text;
  return element;
}

// The sliders (named directions first, then the generator's own main1...), the strip's choice
// and the colours: made once, from the first answer.
function build(listed) {
  if ($("sliders").childElementCount) return;
  const ordered = [
    ...listed.directions.filter((direction) => direction.attribute),
    ...listed.directions.filter((direction) => !direction.attribute),
  ];
  $("sliders").replaceChildren(...ordered.map(slider));
  $("strip-along").replaceChildren(...ordered.map((direction) => new Option(direction.name, direction.name)));
  buildColours(listed);
  $("steering-status").textContent =
    "Move a slider to edit the image; its name carries the edits, so it can be shared, downloaded and opened again.";
  $("steering").hidden = false;
}

function slider(direction) {
  const id = `steer-${direction.name}`;
  const field = document.createElement("div");
  field.className = "field slider";
  const label = document.createElement("label");
  label.htmlFor = id;
  const value = document.createElement("output");
  value.id = `${id}-value`;
  value.setAttribute("for", id);
  value.textContent = "0";
  label.append(`${direction.name} `, value);
  const input = document.createElement("input");
  Object.assign(input, { type: "range", id, min: -SLIDER_LIMIT, max: SLIDER_LIMIT, step: 0.1, value: 0 });
  input.dataset.direction = direction.name;
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = `${id}-hint`;
  const kept = direction.category_kept;
  hint.textContent = direction.description + (kept !== null && kept < 0.9
    ? `; at ±2 the category is kept in ${Math.round(100 * kept)}% of images.` : "");
  input.setAttribute("aria-describedby", hint.id);
  field.append(label, input, hint);
  return field;
}

function buildColours(listed) {
  const names = listed.colour_names;
  let offered;
  if (listed.colour) {
    offered = SWATCHES.filter((name) => name in names);
    $("colour-note").textContent = "Choose a colour: the product is steered to it, its category and shape kept.";
  } else {
    // a grey generator: each grey the API names (R = G = B) once, black to white, and no picker
    const greys = new Map();
    for (const [name, hex] of Object.entries(names)) {
      if (hex.slice(1, 3) === hex.slice(3, 5) && hex.slice(3, 5) === hex.slice(5, 7) && !greys.has(hex)) {
        greys.set(hex, name);
      }
    }
    offered = [...greys.keys()].sort().map((hex) => greys.get(hex));
    $("colour-note").textContent = "This generator makes grey images, so it offers greys only, from black to white.";
    $("picker").hidden = true;
  }
  $("swatches").replaceChildren(...offered.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "swatch secondary";
    button.dataset.colour = name;
    button.setAttribute("aria-pressed", "false");
    button.title = `${name} (${names[name]})`;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = names[name];
    button.append(dot, name);
    return button;
  }));
}

// A newly opened image: the edits its name ends in onto the sliders where they fit (a known
// direction, -2 to +2 in steps of 0.1); those up to the last that does not are kept as written,
// first, so that the edits apply in the order written. The last image's colour and strip put away.
function steer(name, label) {
  const match = name.match(EDITED);
  const parts = match ? match[2].split(",").map((part) => part.match(EDIT)) : [];
  base = match && parts.every(Boolean) ? match[1] : name;
  baseLabel = label;
  const edits = (base === name ? [] : parts).map((part) => [part[1].toLowerCase(), part[2]]);
  const fits = ([direction, amount]) =>
    $(`steer-${direction}`) && Math.abs(Number(amount)) <= SLIDER_LIMIT && amountText(amount) === String(Number(amount));
  const kept = edits.findLastIndex((edit) => !fits(edit)) + 1;
  fixed = edits.slice(0, kept);
  const values = new Map(edits.slice(kept).map(([direction, amount]) => [direction, Number(amount)]));
  for (const input of sliders()) setSlider(input, values.get(input.dataset.direction) || 0);
  colourAsked += 1; // a colourway still on its way is the last image's
  $("swatches").removeAttribute("aria-busy");
  $("colourway").hidden = true;
  $("colour-status").textContent = "";
  showError("colour-error", "");
  $("swatches").querySelectorAll("[aria-pressed]").forEach((b) => b.setAttribute("aria-pressed", "false"));
  $("strip-result").hidden = true;
  showError("strip-error", "");
  $("steer-copy-status").textContent = "";
  // the preview stays in view below the dialog's heading while the sliders scroll
  detail.style.setProperty("--head", `${detail.querySelector(".detail-head").offsetHeight}px`);
  show(true);
}

function setSlider(input, value) {
  input.value = value;
  $(`${input.id}-value`).textContent = amountText(value);
}

// The edited image's name, at once; its pixels once the sliders rest (``now``: at once).
function show(now) {
  const name = steered();
  $("steer-name").textContent = shownName(name);
  $("steer-name").dataset.name = name;
  $("steer-download").href = imageUrl(name);
  $("steer-download").download = `${fileName(isLong(name) ? `vector-${name.slice(2, 14)}${name.slice(base.length)}` : name)}.png`;
  clearTimeout(previewTimer);
  const load = () => {
    showError("steer-error", "");
    $("steer-image").src = imageUrl(name);
    $("steer-image").alt = `${shortName(base, baseLabel)}${name.slice(base.length)}`;
  };
  if (now) load();
  else previewTimer = setTimeout(load, PREVIEW_DELAY);
}

$("sliders").addEventListener("input", (event) => {
  $(`${event.target.id}-value`).textContent = amountText(event.target.value);
  fixed = fixed.filter(([name]) => name !== event.target.dataset.direction); // the slider's amount now
  $("steer-copy-status").textContent = "";
  show(false);
});
// Reset: the image with no edits, as made.
$("steer-reset").addEventListener("click", () => {
  fixed = [];
  sliders().forEach((input) => setSlider(input, 0));
  show(true);
});
$("steer-copy").addEventListener("click", () => copyName($("steer-name").dataset.name, "steer-copy-status"));

// Colour: a swatch or any colour picked; the product as steered above, in that colour.
$("swatches").addEventListener("click", (event) => {
  const swatch = event.target.closest(".swatch");
  if (!swatch) return;
  $("swatches").querySelectorAll(".swatch").forEach((b) => b.setAttribute("aria-pressed", String(b === swatch)));
  makeColourway(swatch.dataset.colour, swatch.dataset.colour);
});
$("colour-pick").addEventListener("change", () => {
  $("swatches").querySelectorAll(".swatch").forEach((b) => b.setAttribute("aria-pressed", "false"));
  makeColourway($("colour-pick").value, $("colour-pick").value);
});

// How far apart two colours look, in words (data/colour.py: about 1 is just noticeable, under
// 10 a shade apart, over 20 another colour).
function likeness(difference) {
  if (difference <= 2) return "as good as the same colour";
  if (difference < 10) return "a near shade";
  if (difference <= 20) return "a clearly different shade";
  return "another colour";
}

async function makeColourway(colour, label) {
  const asked = ++colourAsked;
  const of = steered();
  showError("colour-error", "");
  $("colour-status").textContent = `Making it ${label}…`;
  $("swatches").setAttribute("aria-busy", "true");
  try {
    const response = await request(url("/colourways.json", { of, colours: colour }));
    const way = (await response.json()).colourways[0];
    if (asked !== colourAsked) return;
    colourway = { name: way.name, label: `${shortName(base, baseLabel)} in ${label}` };
    $("colourway-image").src = imageUrl(way.name);
    $("colourway-image").alt = colourway.label;
    const asking = label === way.colour ? way.colour : `${label} (${way.colour})`;
    $("colourway-text").textContent = way.reached
      ? `Asked for ${asking}; reached ${way.reached}, CIEDE2000 ${way.ciede2000.toFixed(1)}: ${likeness(way.ciede2000)}.`
      : `Asked for ${asking}; no product could be seen in the image to measure its colour.`;
    $("chip-asked").style.background = way.colour;
    $("chip-reached").style.background = way.reached;
    $("chips").hidden = !way.reached;
    $("colourway").hidden = false;
    $("colour-status").textContent = "";
  } catch (error) {
    if (asked !== colourAsked) return;
    $("colour-status").textContent = "";
    showError("colour-error", error.message);
  } finally {
    if (asked === colourAsked) $("swatches").removeAttribute("aria-busy");
  }
}

$("colourway-open").addEventListener("click", () => {
  if (colourway) openDetail(colourway.name, undefined, colourway.label);
});

// A strip of the image at -2...+2 along one slider, the other sliders as they are.
$("strip-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const along = $("strip-along").value;
  const of = steered(along);
  showError("strip-error", "");
  $("strip-image").src = url("/strip.png", { of, along, amounts: STRIP_AMOUNTS.join(",") });
  $("strip-image").alt = `${shortName(base, baseLabel)}${of.slice(base.length)} along ${along}, from -2 to +2`;
  $("strip-caption").replaceChildren(...STRIP_AMOUNTS.map((amount) => {
    const step = document.createElement("span");
    step.textContent = `${along} ${amount > 0 ? "+" : ""}${amount}`;
    return step;
  }));
  $("strip-result").hidden = false;
});
$("strip-along").addEventListener("change", () => {
  if (!$("strip-result").hidden) $("strip-form").requestSubmit();
});
