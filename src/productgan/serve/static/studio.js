// The studio page (serve/routes/pages.py): the form checked by the server before the page changes,
// the detail view of one image (download, variants, nearest training images, a walk), a selection
// downloaded as a zip, and a photo projected into the generator (steering.js adds the detail view's
// sliders, colours and strip, and uses the helpers here). Every request goes to this server,
// under the root path the page was served at; a refusal's sentence (`detail`) is shown beside the
// field it is about. An answer of 503 is asked again after the Retry-After it gives.
"use strict";

const root = document.body.dataset.root;
const servesRun = document.body.dataset.run === "1";
const $ = (id) => document.getElementById(id);
const url = (path, params) => `${root}${path}${params ? "?" + new URLSearchParams(params) : ""}`;
const imageUrl = (name, scale) => url("/named.png", scale ? { name, scale } : { name });
const fileName = (name) => name.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// How long a request the server was too busy for is asked again: it answers 503 at once, with
// the seconds to wait in Retry-After; a thumbnail waits out a colleague's large grids for up to
// two minutes, and then says it gave up.
const RETRY_FOR = 120_000;

// The wait a 503 asks for, in ms: its Retry-After (1 s when it gives none), and up to half as long
// again at random, so that the images refused together do not all come back together.
function retryDelay(response) {
  const asked = Number.parseInt(response.headers.get("Retry-After") || "1", 10);
  return Math.max(Number.isFinite(asked) ? asked : 1, 1) * 1000 * (1 + 0.5 * Math.random());
}

// A failed answer's sentence: the server's `detail`, or a plain one when there is none.
async function problem(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch (error) { /* not JSON */ }
  return response.status === 503
    ? "The server is busy; try again in a moment."
    : `The server answered ${response.status}; try again.`;
}

// fetch, asked again on 503 after the wait the server asks for, for up to RETRY_FOR ms.
async function request(path, options) {
  const deadline = Date.now() + RETRY_FOR;
  for (;;) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      throw new Error("The server cannot be reached; check the connection and try again.");
    }
    const wait = response.status === 503 ? retryDelay(response) : 0;
    if (wait && Date.now() + wait < deadline) {
      await sleep(wait);
      continue;
    }
    if (!response.ok) throw new Error(await problem(response));
    return response;
  }
}

function showError(id, message, field) {
  $(id).textContent = message || "";
  if (field) field.setAttribute("aria-invalid", message ? "true" : "false");
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
}

function saveBlob(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

// Images the server was too busy to make (each thumbnail is a request of its own, refused with 503
// when the server's line is full): the image shows a placeholder and is asked for again, after the
// server's Retry-After. An <img> cannot read the status, so the address is fetched; its bytes then
// fill the image.
const waiting = new Set();
function galleryStatus() {
  const failed = document.querySelectorAll(".failed").length;
  $("gallery-status").textContent = waiting.size
    ? `The server is busy: ${waiting.size} image${waiting.size === 1 ? " is" : "s are"} waiting for their turn.`
    : failed
      ? `${failed} image${failed === 1 ? "" : "s"} could not be made while the server was busy; reload to try again.`
      : "";
}

async function recover(image) {
  const address = image.getAttribute("src");
  if (waiting.has(image) || !address || !image.src.startsWith(`${location.origin}${root}/`)) return;
  const holder = image.closest(".cell, .choice, figure") || image;
  waiting.add(image);
  holder.classList.add("waiting");
  holder.classList.remove("failed");
  galleryStatus();
  try {
    const response = await request(address);
    const blob = await response.blob();
    if (image.getAttribute("src") === address) image.src = URL.createObjectURL(blob);
  } catch (error) {
    if (image.getAttribute("src") === address) {
      holder.classList.add("failed");
      // An image with a place for its sentence (data-error: the steering's) says why it failed.
      if (image.dataset.error) showError(image.dataset.error, error.message);
    }
  } finally {
    waiting.delete(image);
    holder.classList.remove("waiting");
    galleryStatus();
  }
}

// `error` does not bubble: listened for on the way down. Images that failed before this script
// ran are found by their state (complete with no pixels; a lazy image not yet asked for is not
// complete).
document.addEventListener("error", (event) => {
  if (event.target instanceof HTMLImageElement) recover(event.target);
}, true);
document.querySelectorAll("img[src]").forEach((image) => {
  if (image.complete && image.naturalWidth === 0) recover(image);
});

// The form, in a disclosure that a narrow screen keeps closed (its summary says what the gallery
// shows), unless a value was refused. The page itself is asked for first, so that a bad value
// gets its sentence in place.
const controls = $("controls");
const controlsBox = $("controls-box");
const narrow = window.matchMedia("(max-width: 520px)");
function fitControls() {
  controlsBox.open = !narrow.matches || controlsBox.dataset.invalid === "true";
}
fitControls();
narrow.addEventListener("change", fitControls);
const fields = ["label", "n", "seed", "temperature"].filter((name) => $(name));
document.querySelector("[autofocus]")?.focus();

function fieldOf(sentence) {
  const first = sentence.split(/[\s:]/, 1)[0];
  return fields.includes(first) ? first : sentence.startsWith("Unknown class") ? "label" : "n";
}

controls.addEventListener("submit", async (event) => {
  event.preventDefault();
  fields.forEach((name) => showError(`${name}-error`, "", $(name)));
  const params = new URLSearchParams(new FormData(controls));
  const target = `${root}/?${params}`;
  busy($("generate"), true);
  $("gallery").setAttribute("aria-busy", "true");
  try {
    await request(target, { headers: { Accept: "application/json" } });
    window.location.assign(target);
  } catch (error) {
    const name = fieldOf(error.message);
    showError(`${name}-error`, error.message, $(name));
    $(name).focus();
    busy($("generate"), false);
    $("gallery").removeAttribute("aria-busy");
  }
});

$("new-seed").addEventListener("click", () => {
  $("seed").value = crypto.getRandomValues(new Uint32Array(1))[0];
  controls.requestSubmit();
});

// A selection of images, downloaded as one zip.
const selected = new Set();
document.querySelectorAll(".pick input").forEach((box) => {
  box.addEventListener("change", () => {
    if (box.checked) selected.add(box.dataset.name);
    else selected.delete(box.dataset.name);
    $("selection-zip").textContent = `Download selection (${selected.size})`;
    $("selection-zip").disabled = selected.size === 0;
  });
});

$("selection-zip").addEventListener("click", async () => {
  const button = $("selection-zip");
  showError("selection-error", "");
  busy(button, true);
  try {
    const response = await request(url("/selection.zip"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ names: [...selected] }),
    });
    saveBlob(await response.blob(), "selection.zip");
  } catch (error) {
    showError("selection-error", error.message);
  } finally {
    busy(button, selected.size === 0);
    button.setAttribute("aria-busy", "false");
  }
});

// Names: a seed's image is named in a few characters (7:3:Bag), and so may a variant be; a z:
// name carries its whole vector, hundreds of characters, and is shown by a short label instead,
// the full name a click away (Copy the name).
const LONG_NAME = 40;
const isLong = (name) => name.startsWith("z:") && name.length > LONG_NAME;
const shortName = (name, label) => (isLong(name) ? label || `z:${name.slice(2, 8)}…` : name);

// The detail view of one image, by its name (and the short label it was shown by).
const detail = $("detail");
let current = null;
let currentLabel = "";
let opener = null;

function imageButton(name, label, lazy) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cell";
  button.dataset.name = name;
  if (label) button.dataset.label = label;
  button.setAttribute("aria-label", `Open ${label || name}`);
  const image = document.createElement("img");
  image.className = "pixel";
  image.alt = label || name;
  if (lazy) image.loading = "lazy";
  image.src = imageUrl(name);
  button.append(image);
  return button;
}

function openDetail(name, category, label) {
  current = name;
  currentLabel = shortName(name, label);
  if (!detail.open) opener = document.activeElement;
  $("detail-title").textContent = currentLabel;
  // a long name's first characters, to recognise it by; the whole of it is copied with a click
  $("detail-name").textContent = isLong(name) ? `${name.slice(0, 14)}… (${name.length} characters)` : name;
  $("copy-status").textContent = "";
  $("detail-category").textContent = describe(name, category);
  $("detail-image").src = imageUrl(name);
  $("detail-image").alt = currentLabel;
  const base = fileName(isLong(name) ? `vector-${name.slice(2, 14)}` : name);
  $("download-native").href = imageUrl(name);
  $("download-native").download = `${base}.png`;
  $("download-large").href = imageUrl(name, 8);
  $("download-large").download = `${base}-x8.png`;
  $("variants-section").hidden = true;
  $("variants").replaceChildren();
  $("walk-result").hidden = true;
  showError("walk-to-error", "", $("walk-to"));
  showError("frames-error", "", $("frames"));
  const chosen = $("walk-to").value;
  fillChoices(!chosen || chosen === name ? anotherName(name) : chosen);
  if (!detail.open) detail.showModal();
  detail.scrollTop = 0; // a variant opened from below: its image at the top
  if (servesRun) neighbours(name);
  // steering.js fills its part of the view for this image
  detail.dispatchEvent(new CustomEvent("image-opened", { detail: { name, label: currentLabel } }));
}

function describe(name, category) {
  const made = category ? `, made as ${category}` : "";
  if (name.startsWith("z:")) return `A latent vector carried in its name${made}.`;
  if (name.includes("~")) return `A variant of ${name.split("~")[0]}${made}.`;
  const [seed, rest] = [name.split(":")[0], name.split(":").slice(1).join(":")];
  if (!/^\d+$/.test(seed) || !rest) return category ? `Made as ${category}.` : "";
  const [parts, temperature] = rest.split("@");
  const [index, label] = [parts.split(":")[0], parts.split(":").slice(1).join(":")];
  if (!/^\d+$/.test(index)) return category ? `Made as ${category}.` : "";
  return `Seed ${seed}, image ${index}${label ? `, ${label}` : ""}, temperature ${temperature || "1"}.`;
}

function galleryNames() {
  return [...document.querySelectorAll(".gallery .cell")].map((cell) => cell.dataset.name);
}

function anotherName(name) {
  const names = galleryNames();
  const at = names.indexOf(name);
  return names.length > 1 ? names[(at + 1) % names.length] : "0:0";
}

document.addEventListener("click", (event) => {
  const cell = event.target.closest(".cell");
  if (cell && cell.dataset.name) openDetail(cell.dataset.name, cell.dataset.category, cell.dataset.label);
});
$("close").addEventListener("click", () => detail.close());
detail.addEventListener("close", () => {
  if (opener && document.contains(opener)) opener.focus();
});

// A name to the clipboard: the Clipboard API where the page is a secure context (https,
// localhost), a selected text field otherwise (inside the dialog, which is all that is not inert).
async function copyName(name, status) {
  try {
    if (!navigator.clipboard) throw new Error("no clipboard");
    await navigator.clipboard.writeText(name);
  } catch (error) {
    const field = document.createElement("textarea");
    field.value = name;
    field.className = "offscreen";
    detail.append(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
  $(status).textContent = isLong(name) ? `Copied the full name (${name.length} characters).` : "Copied.";
}
$("copy-name").addEventListener("click", () => copyName(current, "copy-status"));

// More like this, as far as the spread asks; a new spread asks again once variants are shown.
$("spread").addEventListener("input", () => {
  $("spread-value").textContent = Number($("spread").value).toString();
});
$("spread").addEventListener("change", () => {
  if (!$("variants-section").hidden) moreLikeThis();
});
$("more").addEventListener("click", moreLikeThis);

async function moreLikeThis() {
  const button = $("more");
  const of = current;
  const ofLabel = currentLabel;
  showError("variants-error", "");
  $("variants-section").hidden = false;
  busy(button, true);
  try {
    const response = await request(url("/variants.json", { of, n: 8, spread: $("spread").value }));
    const body = await response.json();
    if (of !== current) return;
    $("variants").replaceChildren(
      ...body.variants.map((variant, i) => {
        const label = isLong(variant.name) ? `variant ${i + 1} of ${ofLabel}` : variant.name;
        const cell = imageButton(variant.name, label);
        cell.classList.add("variant");
        if (variant.category) cell.dataset.category = variant.category;
        const figure = document.createElement("figure");
        const caption = document.createElement("figcaption");
        // the part of its name that differs from the image varied (~SPREAD/SEED#INDEX)
        const own = variant.name.startsWith(`${of}~`) ? `…${variant.name.slice(of.length)}` : variant.name;
        caption.textContent = isLong(variant.name) ? `variant ${i + 1}` : own;
        figure.append(cell, caption);
        return figure;
      }),
    );
    fillChoices($("walk-to").value);
  } catch (error) {
    showError("variants-error", error.message);
  } finally {
    busy(button, false);
  }
}

async function neighbours(name) {
  const section = $("neighbours-section");
  section.hidden = false;
  section.setAttribute("aria-busy", "true");
  $("copy-flag").textContent = "Looking for the nearest training images…";
  $("copy-flag").className = "";
  showError("neighbours-error", "");
  try {
    const response = await request(url("/neighbours.json", { of: name, k: 4 }));
    const body = await response.json();
    if (name !== current) return;
    const found = body.images[0];
    $("copy-flag").textContent = found.likely_copy
      ? "Likely a copy: closer to a training image than 99% of real held-out photos are."
      : "Not a copy: no training image is unusually close.";
    $("copy-flag").className = found.likely_copy ? "copy" : "";
    $("neighbours").replaceChildren(
      ...found.neighbours.map((neighbour, i) => {
        const figure = document.createElement("figure");
        if (i === 0 && found.likely_copy) figure.className = "copy";
        const image = document.createElement("img");
        image.className = "pixel";
        image.src = url(`/training/${neighbour.index}.png`);
        image.alt = `training image ${neighbour.index}`;
        const caption = document.createElement("figcaption");
        caption.textContent = `#${neighbour.index}, ${neighbour.distance.toFixed(2)}`;
        figure.append(image, caption);
        return figure;
      }),
    );
  } catch (error) {
    $("copy-flag").textContent = "";
    showError("neighbours-error", error.message);
  } finally {
    section.removeAttribute("aria-busy");
  }
}

// Walk to another image: chosen with a click (or the arrow keys) among the variants and the
// gallery's images, each a radio button; or typed, in the disclosure below them.
function fillChoices(chosen) {
  const candidates = [
    ...[...$("variants").querySelectorAll(".cell")].map((cell) => [cell.dataset.name, cell.dataset.label]),
    ...galleryNames().map((name) => [name, name]),
  ].filter(([name]) => name !== current);
  $("walk-choices").replaceChildren(
    ...candidates.map(([name, label]) => {
      const choice = document.createElement("label");
      choice.className = "choice";
      choice.title = shortName(name, label);
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "walk-choice";
      radio.value = name;
      radio.checked = name === chosen;
      const image = document.createElement("img");
      image.className = "pixel";
      image.loading = "lazy";
      image.alt = shortName(name, label);
      image.src = imageUrl(name);
      choice.append(radio, image);
      return choice;
    }),
  );
  choose(chosen, candidates.find(([name]) => name === chosen)?.[1]);
}

function choose(name, label) {
  $("walk-to").value = name;
  $("walk-chosen").textContent = name ? `Walking to ${shortName(name, label)}.` : "";
}

$("walk-choices").addEventListener("change", (event) => {
  const radio = event.target;
  showError("walk-to-error", "", $("walk-to"));
  choose(radio.value, radio.closest(".choice").title);
});
$("walk-to").addEventListener("input", () => {
  const typed = $("walk-to").value.trim();
  $("walk-choices").querySelectorAll("input").forEach((radio) => {
    radio.checked = radio.value === typed;
  });
  $("walk-chosen").textContent = typed ? `Walking to ${shortName(typed)}.` : "";
});

let walkUrl = null;
$("walk").addEventListener("submit", async (event) => {
  event.preventDefault();
  const to = $("walk-to").value.trim();
  const frames = $("frames").value.trim();
  showError("walk-to-error", "", $("walk-to"));
  showError("frames-error", "", $("frames"));
  busy($("walk-go"), true);
  try {
    const response = await request(url("/walk.gif", { from: current, to, frames, fps: 12, scale: 4 }));
    if (walkUrl) URL.revokeObjectURL(walkUrl);
    walkUrl = URL.createObjectURL(await response.blob());
    $("walk-image").src = walkUrl;
    $("walk-download").href = walkUrl;
    $("walk-result").hidden = false;
  } catch (error) {
    const field = error.message.startsWith("frames") ? "frames" : "walk-to";
    if (field === "walk-to") $("walk-typed").open = true;
    showError(`${field}-error`, error.message, $(field));
  } finally {
    busy($("walk-go"), false);
  }
});

// A photo projected into the generator (offered when the server serves a run directory). The
// verdict is the API's, word for word.
let projected = null;
$("upload")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const photo = $("photo").files[0];
  showError("photo-error", "", $("photo"));
  if (!photo) {
    showError("photo-error", "Choose a photo of a product first.", $("photo"));
    return;
  }
  const form = new FormData();
  form.append("photo", photo);
  busy($("project"), true);
  $("project").firstChild.textContent = "Searching…";
  try {
    const response = await request(url("/project", { steps: $("effort").value }), { method: "POST", body: form });
    projected = await response.json();
    $("target").src = projected.target;
    $("reconstruction").src = projected.reconstruction;
    $("verdict").textContent = projected.verdict;
    $("verdict").classList.toggle("unlike", projected.match === null); // not like the training data
    $("distance").textContent =
      `Distance ${projected.feature_distance.toFixed(2)}, where a similar real product is typically ` +
      `${projected.typical_real_distance.toFixed(2)} away.`;
    $("projection").hidden = false;
  } catch (error) {
    showError("photo-error", error.message, $("photo"));
  } finally {
    $("project").firstChild.textContent = "Find it";
    busy($("project"), false);
  }
});

$("open-projection")?.addEventListener("click", () => {
  if (projected) openDetail(projected.name, projected.label, "the closest image to your photo");
});
