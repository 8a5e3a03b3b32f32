// The studio page (serve/pages.py): the form checked by the server before the page changes, the
// detail view of one image (download, variants, nearest training images, a walk), a selection
// downloaded as a zip, and a photo projected into the generator. Every request goes to this server,
// under the root path the page was served at; a refusal's sentence (`detail`) is shown beside the
// field it is about.
"use strict";

const root = document.body.dataset.root;
const servesRun = document.body.dataset.run === "1";
const $ = (id) => document.getElementById(id);
const url = (path, params) => `${root}${path}${params ? "?" + new URLSearchParams(params) : ""}`;
const imageUrl = (name, scale) => url("/named.png", scale ? { name, scale } : { name });
const fileName = (name) => name.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);

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

async function request(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error("The server cannot be reached; check the connection and try again.");
  }
  if (!response.ok) throw new Error(await problem(response));
  return response;
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

// The form: the page itself is asked for first, so that a bad value gets its sentence in place.
const controls = $("controls");
const fields = ["label", "n", "seed", "temperature"].filter((name) => $(name));

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
    await request(target);
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

// The detail view of one image, by its name.
const detail = $("detail");
let current = null;
let opener = null;

function imageButton(name, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cell";
  button.dataset.name = name;
  button.setAttribute("aria-label", `Open ${label || name}`);
  const image = document.createElement("img");
  image.className = "pixel";
  image.alt = label || name;
  image.src = imageUrl(name);
  button.append(image);
  return button;
}

function openDetail(name, category) {
  current = name;
  if (!detail.open) opener = document.activeElement;
  const short = name.startsWith("z:") ? `${category || "image"} from a vector` : name;
  $("detail-title").textContent = short;
  $("detail-name").textContent = name;
  $("detail-category").textContent = describe(name, category);
  $("detail-image").src = imageUrl(name);
  $("detail-image").alt = short;
  const base = fileName(name.startsWith("z:") ? `vector-${name.slice(2, 14)}` : name);
  $("download-native").href = imageUrl(name);
  $("download-native").download = `${base}.png`;
  $("download-large").href = imageUrl(name, 8);
  $("download-large").download = `${base}-x8.png`;
  $("variants-section").hidden = true;
  $("variants").replaceChildren();
  $("walk-result").hidden = true;
  showError("walk-to-error", "", $("walk-to"));
  showError("frames-error", "", $("frames"));
  if (!$("walk-to").value || $("walk-to").value === name) $("walk-to").value = anotherName(name);
  if (!detail.open) detail.showModal();
  if (servesRun) neighbours(name);
}

function describe(name, category) {
  if (name.startsWith("z:")) return `A latent vector carried in its name${category ? `, made as ${category}` : ""}.`;
  const [seed, rest] = [name.split(":")[0], name.split(":").slice(1).join(":")];
  const [parts, temperature] = rest.split("@");
  const [index, label] = [parts.split(":")[0], parts.split(":").slice(1).join(":")];
  return `Seed ${seed}, image ${index}${label ? `, ${label}` : ""}, temperature ${temperature || "1"}.`;
}

function anotherName(name) {
  const names = [...document.querySelectorAll(".gallery .cell")].map((cell) => cell.dataset.name);
  const at = names.indexOf(name);
  return names.length > 1 ? names[(at + 1) % names.length] : "0:0";
}

document.addEventListener("click", (event) => {
  const cell = event.target.closest(".cell");
  if (cell && cell.dataset.name) openDetail(cell.dataset.name, cell.dataset.category);
});
$("close").addEventListener("click", () => detail.close());
detail.addEventListener("close", () => {
  if (opener && document.contains(opener)) opener.focus();
});

$("more").addEventListener("click", async () => {
  const button = $("more");
  showError("variants-error", "");
  $("variants-section").hidden = false;
  busy(button, true);
  try {
    const response = await request(url("/variants.json", { of: current, n: 8, spread: 0.3 }));
    const body = await response.json();
    $("variants").replaceChildren(
      ...body.variants.map((variant, i) => {
        const cell = imageButton(variant.name, `variant ${i + 1}`);
        if (variant.category) cell.dataset.category = variant.category;
        return cell;
      }),
    );
  } catch (error) {
    showError("variants-error", error.message);
  } finally {
    busy(button, false);
  }
});

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
    showError(`${field}-error`, error.message, $(field));
  } finally {
    busy($("walk-go"), false);
  }
});

// A photo projected into the generator (offered when the server serves a run directory).
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
    const [word, explanation] = projected.verdict.split(": ");
    $("verdict").textContent = `${word[0].toUpperCase()}${word.slice(1)} match${projected.label ? ` as ${projected.label}` : ""}: ${explanation}.`;
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
  if (projected) openDetail(projected.name, projected.label);
});
