// The facesys page: status, API key, identify (file or webcam), enroll, the people list and the
// photo library (group faces, name a group, find a person's photos).
// Talks only to the JSON API of docs/service.md. Server text and names are user data: they go
// into the page through textContent / createElement only, never as HTML.
"use strict";

const KEY_STORAGE = "facesys.apiKey";
const KNOWN_COLOR = "#1a7f37";
const UNKNOWN_COLOR = "#bc4c00";
const CLUSTER_FACES_SHOWN = 12; // crops shown per cluster

let cropUrls = [];        // blob: URLs of the people list's crops (revoked when the list is rebuilt)
let peopleGeneration = 0; // the newest people list; an older refresh still running drops its results
let libraryUrls = [];     // blob: URLs of the clusters' crops (revoked when the clusters are rebuilt)
let libraryGeneration = 0; // the newest cluster list (as peopleGeneration)
let cameraStream = null;  // the running webcam stream, if any
let serviceReady = false; // the last /healthz said ready

const $ = (id) => document.getElementById(id);

// ---- requests ---------------------------------------------------------------------------------

// The pasted API key, trimmed ("" when none).
function apiKey() {
  return $("api-key").value.trim();
}

// The service wants a key and none was given: the page asks for one (askForKey) instead of
// showing an error.
class KeyNeeded extends Error {}

// fetch() a path relative to the page with the Bearer key; throws an Error carrying the service's
// message for a non-2xx answer (KeyNeeded for a 401 to a request sent without a key), and a
// readable one when the service cannot be reached.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    if (serviceReady) checkStatus(); // show "unreachable" and poll until it is back
    throw new Error(`Cannot reach the service (${err.message}).`);
  }
  if (response.status === 401 && !headers.Authorization) {
    askForKey();
    throw new KeyNeeded(await errorMessage(response));
  }
  if (response.status === 401) $("api-key").classList.add("needed"); // a key the service does not know
  if (!response.ok) throw new Error(await errorMessage(response));
  if (!headers.Authorization) keyless();
  return response;
}

// The service answered 401 to a request without a key: mark the key field, say what to paste
// there and put the cursor in it (once; the note stays until a key is typed).
function askForKey() {
  const key = $("api-key");
  const note = $("key-note");
  key.placeholder = "required: paste an API key";
  key.classList.add("needed");
  if (!note.hidden) return;
  note.textContent =
    "This service needs an API key: paste one in the API key field above " +
    "(its administrator makes keys with: facesys keys create NAME --scope identify|enroll|admin).";
  note.hidden = false;
  key.focus();
}

// A request without a key was answered: this service needs none.
function keyless() {
  $("api-key").placeholder = "none needed (keyless local service)";
}

// Hide the key note once a key is typed.
function keyGiven() {
  $("api-key").classList.remove("needed");
  $("key-note").hidden = true;
}

// The message of an error answer ({"error": {"code", "message"}}), or its HTTP status otherwise.
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return `${body.error.message} (${response.status} ${body.error.code})`;
  } catch (_) {
    // not JSON: fall through
  }
  return `The service answered HTTP ${response.status} ${response.statusText}.`;
}

// The JSON answer of api().
async function apiJson(path, options) {
  return (await api(path, options)).json();
}

// The path of one person (names may hold "/", "?", "#", ...).
function personPath(name) {
  return `v1/people/${encodeURIComponent(name)}`;
}

// ---- page helpers -----------------------------------------------------------------------------

// Show a failure: in the #error banner, unless it only says a key is needed (the key note asks).
function fail(err) {
  if (!(err instanceof KeyNeeded)) showError(err && err.message ? err.message : String(err));
}

// Show a message in the #error banner.
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

// Hide the #error banner.
function clearError() {
  $("error").textContent = "";
  $("error").hidden = true;
}

// Run an action: clear the old error, disable its button while it runs, show any failure.
async function run(button, work) {
  clearError();
  if (button) button.disabled = true;
  try {
    await work();
  } catch (err) {
    fail(err);
  } finally {
    if (button) button.disabled = false;
  }
}

// A new element with a class and text (textContent: never parsed as HTML).
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// "1 face", "2 faces".
function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// Read and store the API key (localStorage may be unavailable: then the key lasts until reload).
function storedKey(value) {
  try {
    if (value === undefined) return localStorage.getItem(KEY_STORAGE) || "";
    localStorage.setItem(KEY_STORAGE, value);
  } catch (_) {
    return "";
  }
  return value;
}

// ---- status -----------------------------------------------------------------------------------

// Show /healthz in #status; poll every few seconds until the service is ready, then list the people.
// Runs at start and when a request finds the service gone (one poll at a time: api() starts one
// only while serviceReady is true).
async function checkStatus() {
  serviceReady = false;
  const status = $("status");
  let ready = false;
  try {
    const response = await fetch("healthz", { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    ready = response.ok;
    status.textContent = ready ? `ready · ${body.model}` : `not ready: ${(body.error && body.error.message) || response.status}`;
    status.title = ready ? `gallery ${body.gallery}` : "";
  } catch (err) {
    status.textContent = "service unreachable";
  }
  status.className = ready ? "status ready" : "status down";
  serviceReady = ready;
  if (!ready) setTimeout(checkStatus, 3000);
  else refreshAll().catch(fail); // the lists, once the service is (back) up (a 401 without a key: the page asks for one)
}

// ---- identify ---------------------------------------------------------------------------------

// Identify the photo chosen in #identify-file.
async function identifyFile() {
  const file = $("identify-file").files[0];
  if (!file) throw new Error("Choose a photo to identify first.");
  await identify(file, file.name);
}

// POST one photo to /v1/identify, then draw it with its faces and list them.
async function identify(blob, filename) {
  const results = $("identify-results");
  const canvas = $("identify-canvas");
  canvas.hidden = true;
  results.replaceChildren(el("li", "busy", "Identifying…"));
  const form = new FormData();
  form.append("images", blob, filename);
  let answer;
  try {
    answer = await apiJson("v1/identify", { method: "POST", body: form });
  } catch (err) {
    results.replaceChildren();
    throw err;
  }
  const result = answer.results[0];
  if (result.error) {
    results.replaceChildren();
    throw new Error(result.error.message);
  }
  listFaces(result.faces);
  await drawFaces(blob, result.faces);
}

// One line per face in #identify-results: name (or "unknown" and why), score, threshold and the
// enrolled photo that decided the name.
function listFaces(faces) {
  const items = faces.map((face) => {
    const known = face.name != null; // null (or absent): nobody within the threshold, or a poor face
    const item = el("li", known ? "face known" : "face unknown");
    item.append(el("span", "face-name", known ? face.name : face.quality ? "unknown (low quality)" : "unknown"));
    const candidates = face.candidates || [];
    const nearest = !known && candidates.length ? `nearest ${candidates[0].name}, ` : "";
    const distance = face.distance == null ? "nobody enrolled" : `${nearest}score ${face.distance.toFixed(3)}`;
    const matched = face.matched ? ` · matched enrolled face #${face.matched.face_id} (${baseName(face.matched.source)})` : "";
    const quality = face.quality ? ` · ${face.quality}` : "";
    item.append(el("span", "detail", ` ${distance} · threshold ${face.threshold.toFixed(3)}${matched}${quality}`));
    return item;
  });
  $("identify-results").replaceChildren(...(items.length ? items : [el("li", "empty", "No face found in this photo.")]));
}

// The last part of a path (enrolled photos are stored with the path they were enrolled from).
function baseName(path) {
  return path ? path.split(/[\\/]/).pop() : "?";
}

// Draw the photo on #identify-canvas scaled to fit, with each face's box and name.
async function drawFaces(blob, faces) {
  const canvas = $("identify-canvas");
  const url = URL.createObjectURL(blob);
  const image = new Image();
  try {
    image.src = url;
    await image.decode();
  } catch (_) {
    throw new Error("The browser cannot display this photo (its faces are listed below).");
  } finally {
    URL.revokeObjectURL(url);
  }
  const width = image.naturalWidth;
  const height = image.naturalHeight;
  const box = getComputedStyle(canvas.parentElement);
  const room = canvas.parentElement.clientWidth - parseFloat(box.paddingLeft) - parseFloat(box.paddingRight);
  const scale = Math.min(1, room / width, Math.max(320, window.innerHeight * 0.75) / height);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * scale * ratio);
  canvas.height = Math.round(height * scale * ratio);
  canvas.style.width = `${Math.round(width * scale)}px`;
  canvas.hidden = false;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.drawImage(image, 0, 0, width * scale, height * scale);
  ctx.font = "600 15px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const face of faces) {
    const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
    const color = face.name != null ? KNOWN_COLOR : UNKNOWN_COLOR;
    const label = face.name != null ? face.name : "unknown";
    ctx.lineWidth = 3;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const textWidth = ctx.measureText(label).width + 10;
    const top = y1 >= 24 ? y1 - 24 : y1; // above the box, or inside it at the image's top
    ctx.fillStyle = color;
    ctx.fillRect(x1 - 1.5, top, textWidth, 24);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x1 + 4, top + 4);
  }
}

// ---- webcam -----------------------------------------------------------------------------------

// Start the webcam preview, or stop it when it runs.
async function toggleCamera() {
  if (cameraStream) return stopCamera();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This browser gives no camera access here (it needs https or localhost).");
  }
  try {
    cameraStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    throw new Error(cameraProblem(err));
  }
  $("camera-video").srcObject = cameraStream;
  $("camera").hidden = false;
  $("camera-button").textContent = "Stop camera";
}

// A readable reason why getUserMedia failed.
function cameraProblem(err) {
  if (err.name === "NotAllowedError" || err.name === "SecurityError") return "Camera access was denied.";
  if (err.name === "NotFoundError" || err.name === "OverconstrainedError") return "No camera found.";
  if (err.name === "NotReadableError") return "The camera is in use by another program.";
  return `Cannot start the camera (${err.name}: ${err.message}).`;
}

// Stop the webcam and hide its preview.
function stopCamera() {
  if (cameraStream) cameraStream.getTracks().forEach((track) => track.stop());
  cameraStream = null;
  $("camera-video").srcObject = null;
  $("camera").hidden = true;
  $("camera-button").textContent = "Use camera";
}

// Take a frame from the webcam as a JPEG and identify it.
async function capture() {
  const video = $("camera-video");
  if (!video.videoWidth) throw new Error("The camera shows no picture yet; try again in a moment.");
  const frame = document.createElement("canvas");
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.92));
  if (!blob) throw new Error("Could not take a photo from the camera.");
  stopCamera();
  await identify(blob, "camera.jpg");
}

// ---- enroll -----------------------------------------------------------------------------------

// POST the chosen photos to /v1/people/{name}; list each photo's outcome, then refresh the people.
async function enroll() {
  const name = $("enroll-name").value.trim();
  const files = [...$("enroll-files").files];
  if (!name) throw new Error("Enter the person's name.");
  if (!files.length) throw new Error("Choose one or more photos of this person.");
  const results = $("enroll-results");
  results.replaceChildren(el("li", "busy", `Enrolling ${files.length} photo(s) of ${name}…`));
  const form = new FormData();
  files.forEach((file) => form.append("images", file, file.name));
  let answer;
  try {
    answer = await apiJson(personPath(name), { method: "POST", body: form });
  } catch (err) {
    results.replaceChildren();
    throw err;
  }
  const counts = Object.entries(answer.summary).filter(([, n]) => n > 0).map(([status, n]) => `${n} ${status}`);
  const items = [el("li", "summary", `${answer.name}: ${counts.join(", ")}`)];
  for (const photo of answer.results) {
    const item = el("li", `status-${photo.status}`);
    item.append(el("span", "file", photo.source), el("span", "state", photo.status));
    const note = photo.reason || photo.warning;
    if (note) item.append(el("span", "reason", note));
    items.push(item);
  }
  results.replaceChildren(...items);
  $("enroll-files").value = ""; // ready for the next person's photos
  await refreshPeople();
}

// ---- people -----------------------------------------------------------------------------------

// Rebuild #people from GET /v1/people and each person's faces; crops load as blob: URLs.
async function refreshPeople() {
  const generation = ++peopleGeneration;
  const { people } = await apiJson("v1/people");
  const details = await Promise.all(people.map((person) => apiJson(personPath(person.name))));
  if (generation !== peopleGeneration) return;
  cropUrls.forEach((url) => URL.revokeObjectURL(url));
  cropUrls = [];
  const crops = [];
  const cards = details.map((person) => personCard(person, crops));
  $("people").replaceChildren(...(cards.length ? cards : [el("li", "empty", "Nobody is enrolled yet.")]));
  const loads = await Promise.allSettled(crops.map(([img, faceId]) => loadCrop(img, faceId, generation)));
  const failed = loads.find((load) => load.status === "rejected");
  if (failed) throw failed.reason;
}

// One person's card: name, photo count, rename / remove buttons, and a crop per stored face.
function personCard(person, crops) {
  const card = el("li", "person");
  const head = el("div", "person-head");
  const rename = el("button", "rename", "Rename");
  const remove = el("button", "remove-person danger", "Remove");
  rename.type = remove.type = "button";
  rename.setAttribute("aria-label", `Rename ${person.name}`);
  remove.setAttribute("aria-label", `Remove ${person.name}`);
  rename.addEventListener("click", () => run(rename, () => renamePerson(person.name)));
  remove.addEventListener("click", () => run(remove, () => removePerson(person.name)));
  const count = `${person.faces.length} photo${person.faces.length === 1 ? "" : "s"}`;
  head.append(el("h3", "person-name", person.name), el("span", "count", count), rename, remove);
  const list = el("ul", "crops");
  for (const face of person.faces) {
    const item = el("li", "crop-item");
    const img = el("img", "crop");
    img.alt = `${person.name}: ${face.source}`;
    img.title = face.source;
    const drop = el("button", "remove-face", "×");
    drop.type = "button";
    drop.setAttribute("aria-label", `Remove photo ${face.source} of ${person.name}`);
    drop.addEventListener("click", () => run(drop, () => removeFace(face.face_id, face.source, person.name)));
    item.append(img, drop);
    list.append(item);
    crops.push([img, face.face_id]);
  }
  card.append(head, list);
  return card;
}

// Fetch one face crop with the key and show it through a blob: URL (an <img src> sends no headers).
async function loadCrop(img, faceId, generation) {
  await showCrop(img, `v1/faces/${faceId}/crop`, cropUrls, () => generation !== peopleGeneration);
}

// Fetch the crop at ``path`` and show it in ``img`` through a blob: URL kept in ``urls`` (to be
// revoked when its list is rebuilt), unless ``stale()`` says the list was rebuilt meanwhile.
async function showCrop(img, path, urls, stale) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  if (stale()) return URL.revokeObjectURL(url);
  urls.push(url);
  img.src = url;
}

// Ask for a new name and PATCH it.
async function renamePerson(name) {
  const newName = window.prompt(`New name for ${name}:`, name);
  if (newName === null || !newName.trim() || newName.trim() === name) return;
  await api(personPath(name), {
    method: "PATCH",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: newName.trim() }),
  });
  await refreshPeople();
}

// Remove a person and all their photos, after a confirm().
async function removePerson(name) {
  if (!window.confirm(`Remove ${name} and all their photos from the gallery?`)) return;
  await api(personPath(name), { method: "DELETE" });
  await refreshPeople();
}

// Remove one enrolled photo, after a confirm().
async function removeFace(faceId, source, name) {
  if (!window.confirm(`Remove the photo ${source} of ${name}?`)) return;
  await api(`v1/faces/${faceId}`, { method: "DELETE" });
  await refreshPeople();
}

// ---- library ----------------------------------------------------------------------------------

// Group the library's unnamed faces (POST /v1/library/cluster), then list the groups.
async function groupFaces() {
  const done = await apiJson("v1/library/cluster", { method: "POST" });
  $("library-summary").textContent =
    `Grouped ${plural(done.faces, "unnamed face")} into ${plural(done.clusters, "group")} (${done.new} new).`;
  await refreshLibrary();
}

// Rebuild #clusters from GET /v1/library/clusters; crops load as blob: URLs.
async function refreshLibrary() {
  const generation = ++libraryGeneration;
  const answer = await apiJson(`v1/library/clusters?max_faces=${CLUSTER_FACES_SHOWN}`);
  if (generation !== libraryGeneration) return;
  libraryUrls.forEach((url) => URL.revokeObjectURL(url));
  libraryUrls = [];
  const crops = [];
  const rows = answer.clusters.map((cluster) => clusterRow(cluster, crops));
  const none = el("li", "empty", "No groups of unnamed faces (scan photos with facesys scan, then Group faces).");
  $("clusters").replaceChildren(...(rows.length ? rows : [none]));
  const stale = () => generation !== libraryGeneration;
  const loads = await Promise.allSettled(
    crops.map(([img, faceId]) => showCrop(img, `v1/library/faces/${faceId}/crop`, libraryUrls, stale)),
  );
  const failed = loads.find((load) => load.status === "rejected");
  if (failed) throw failed.reason;
}

// One cluster's row: id, counts, a name field with its Name button, and its first crops.
function clusterRow(cluster, crops) {
  const row = el("li", "cluster");
  const form = el("form", "cluster-form");
  const title = `Group ${cluster.cluster}`;
  const field = el("input", "cluster-name");
  field.type = "text";
  field.required = true;
  field.maxLength = 200;
  field.autocomplete = "off";
  field.placeholder = "name";
  field.setAttribute("aria-label", `Name of the person in group ${cluster.cluster}`);
  const button = el("button", "name-cluster", "Name");
  button.type = "submit";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(button, () => nameCluster(cluster.cluster, field.value));
  });
  const count = `${plural(cluster.size, "face")} · ${plural(cluster.photos, "photo")}`;
  form.append(el("h3", "cluster-title", title), el("span", "count", count), field, button);
  const list = el("ul", "crops");
  for (const faceId of cluster.faces) {
    const item = el("li", "crop-item");
    const img = el("img", "crop");
    img.alt = img.title = `${title}: library face #${faceId}`;
    item.append(img);
    list.append(item);
    crops.push([img, faceId]);
  }
  if (cluster.size > cluster.faces.length) list.append(el("li", "more", `+${cluster.size - cluster.faces.length} more`));
  row.append(form, list);
  return row;
}

// Name every face of a cluster (merged into an existing person of that name); then refresh both lists.
async function nameCluster(cluster, name) {
  name = name.trim();
  if (!name) throw new Error("Enter the person's name.");
  const answer = await apiJson(`v1/library/clusters/${cluster}/name`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  $("library-summary").textContent = `Named group ${cluster} ${answer.name}: ${plural(answer.faces.length, "face")}.`;
  await Promise.all([refreshLibrary(), refreshPeople()]);
}

// List the photos the person in #find-name appears in, with the boxes of their faces.
async function findPhotos() {
  const name = $("find-name").value.trim();
  if (!name) throw new Error("Enter the name of the person to find.");
  const results = $("find-results");
  results.replaceChildren(el("li", "busy", `Finding ${name}…`));
  let answer;
  try {
    answer = await apiJson(`v1/library/find/${encodeURIComponent(name)}`);
  } catch (err) {
    results.replaceChildren();
    throw err;
  }
  const items = [el("li", "summary", `${answer.name}: ${plural(answer.photos.length, "photo")}`)];
  for (const photo of answer.photos) {
    const item = el("li", "photo");
    item.append(el("span", "file", photo.file));
    for (const face of photo.faces) {
      const frame = face.frame == null ? "" : `frame ${face.frame}, `;
      const box = face.box.map((v) => Math.round(v)).join(", ");
      item.append(el("span", "detail", `${frame}box ${box}${face.automatic ? " · attached automatically" : ""}`));
    }
    items.push(item);
  }
  results.replaceChildren(...items);
}

// The people list, then the clusters.
async function refreshAll() {
  await refreshPeople();
  await refreshLibrary();
}

// ---- start ------------------------------------------------------------------------------------

// Wire up the page: key field, forms and buttons; then check the status (which lists the people
// and the clusters).
function init() {
  const key = $("api-key");
  key.value = storedKey();
  key.addEventListener("input", () => {
    storedKey(key.value.trim());
    if (key.value.trim()) keyGiven();
  });
  key.addEventListener("change", () => run(null, refreshAll));
  $("identify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run($("identify-button"), identifyFile);
  });
  $("camera-button").addEventListener("click", () => run($("camera-button"), toggleCamera));
  $("capture-button").addEventListener("click", () => run($("capture-button"), capture));
  $("enroll-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run($("enroll-button"), enroll);
  });
  $("people-refresh").addEventListener("click", () => run($("people-refresh"), refreshPeople));
  $("library-cluster").addEventListener("click", () => run($("library-cluster"), groupFaces));
  $("library-refresh").addEventListener("click", () => run($("library-refresh"), refreshLibrary));
  $("find-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run($("find-button"), findPhotos);
  });
  checkStatus();
}

init();
