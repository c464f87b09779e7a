// 项目检查 Project check on the map: draw a polygon (click to add vertices; click the first vertex, double-click or
// 完成 Finish to close) or drop / choose a GeoJSON, zipped Shapefile or GeoPackage file → the `project-check` process
// → the conflicts the project would create, drawn on the map and listed with totals.

import {$, bbox, config, el, EMPTY, json, layers, m2, SEVERITY, showGeoJSON} from "./common.js";

const PROCESS = "/processes/project-check/execution";
const DRAW = "#1f4e9c";
const CLOSE_PX = 10;   // a click this close to the first vertex closes the polygon
const SAME_PX = 3;     // a click this close to the last vertex adds none (the clicks of a double-click)
/** File suffix → the media type the upload claims (the server opens the file only as that). */
const MEDIA_TYPES = {".geojson": "application/geo+json", ".json": "application/geo+json", ".zip": "application/zip",
                     ".gpkg": "application/geopackage+sqlite3"};

/** The project check on `map`; `click(event)` takes the map's clicks while drawing (true: the click was used). */
export function projectCheck(map) {
  const state = {vertices: [], drawing: false, cursor: null, result: null, asked: null};
  addLayers(map);
  if (!config.processes.includes("project-check")) {
    $("check-body").replaceChildren(el("p", {className: "hint"}, config.caller.name
      ? "项目检查需要读取冲突的权限 (the project check needs a grade that reads the conflicts)"
      : el("a", {href: "/login?next=/map"}, "登录后检查项目 Sign in to check a project")));
    return {click: () => false, state};
  }
  const redraw = () => drawSketch(map, state);
  const finish = () => finishDrawing(map, state);
  $("draw-start").addEventListener("click", () => startDrawing(map, state));
  $("draw-finish").addEventListener("click", finish);
  $("draw-undo").addEventListener("click", () => { state.vertices.pop(); redraw(); });
  $("check-clear").addEventListener("click", () => clear(map, state));
  $("check-file").addEventListener("change", (event) => event.target.files[0] && checkFile(map, state, event.target.files[0]));
  for (const zone of [$("drop-zone"), $("stage")]) acceptDrops(zone, (file) => checkFile(map, state, file));
  map.on("mousemove", (event) => { if (state.drawing) { state.cursor = event.lngLat.toArray(); redraw(); } });
  map.on("dblclick", (event) => { if (state.drawing) { event.preventDefault(); finish(); } });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.drawing) stopDrawing(map, state); });
  return {state, click: (event) => state.drawing && addVertex(map, state, event)};
}

// -- drawing ---------------------------------------------------------------------------------------------------

function addLayers(map) {
  showGeoJSON(map, "check-conflicts", EMPTY);
  showGeoJSON(map, "check-project", EMPTY);
  showGeoJSON(map, "check-sketch", EMPTY);
  const severity = ["match", ["get", "severity"], "high", SEVERITY.high, "medium", SEVERITY.medium, SEVERITY.low];
  map.addLayer({id: "check-project-fill", type: "fill", source: "check-project", paint: {"fill-color": DRAW, "fill-opacity": 0.12}});
  map.addLayer({id: "check-conflicts-fill", type: "fill", source: "check-conflicts", paint: {"fill-color": severity, "fill-opacity": 0.45}});
  map.addLayer({id: "check-conflicts-line", type: "line", source: "check-conflicts",
                paint: {"line-color": "#5a0000", "line-width": 1.5}});
  map.addLayer({id: "check-project-line", type: "line", source: "check-project",
                paint: {"line-color": DRAW, "line-width": 3, "line-dasharray": [2, 1]}});
  map.addLayer({id: "check-sketch-fill", type: "fill", source: "check-sketch", filter: ["==", ["geometry-type"], "Polygon"],
                paint: {"fill-color": DRAW, "fill-opacity": 0.15}});
  map.addLayer({id: "check-sketch-line", type: "line", source: "check-sketch", filter: ["==", ["geometry-type"], "LineString"],
                paint: {"line-color": DRAW, "line-width": 2, "line-dasharray": [2, 1]}});
  map.addLayer({id: "check-sketch-points", type: "circle", source: "check-sketch", filter: ["==", ["geometry-type"], "Point"],
                paint: {"circle-radius": 4, "circle-color": "#ffffff", "circle-stroke-color": DRAW, "circle-stroke-width": 2}});
}

function startDrawing(map, state) {
  clear(map, state);
  state.drawing = true;
  map.doubleClickZoom.disable();
  map.getCanvas().style.cursor = "crosshair";
  $("draw-hint").hidden = false;
  $("draw-finish").disabled = false;
}

function stopDrawing(map, state) {
  state.drawing = false;
  state.cursor = null;
  map.getCanvas().style.cursor = "";
  $("draw-hint").hidden = true;
  $("draw-finish").disabled = true;
  setTimeout(() => map.doubleClickZoom.enable(), 0);  // after this double-click's own zoom would have run
  drawSketch(map, state);
}

/** A click while drawing: a vertex, or the polygon closed when it is on the first vertex. */
function addVertex(map, state, event) {
  const at = event.point;
  const near = (lngLat, px) => lngLat && map.project(lngLat).dist(at) <= px;
  if (state.vertices.length >= 3 && near(state.vertices[0], CLOSE_PX)) finishDrawing(map, state);
  else if (!near(state.vertices.at(-1), SAME_PX)) state.vertices.push(event.lngLat.toArray());
  drawSketch(map, state);
  return true;
}

/** The sketch: the vertices, the edges (to the cursor while drawing), the polygon they close. */
function drawSketch(map, state) {
  const points = state.vertices.map((c) => ({type: "Feature", properties: {}, geometry: {type: "Point", coordinates: c}}));
  const path = state.drawing && state.cursor ? [...state.vertices, state.cursor] : state.vertices;
  const features = [...points];
  if (path.length >= 2) features.push({type: "Feature", properties: {}, geometry: {type: "LineString", coordinates: path}});
  if (path.length >= 3) {
    features.push({type: "Feature", properties: {}, geometry: {type: "Polygon", coordinates: [[...path, path[0]]]}});
  }
  map.getSource("check-sketch").setData({type: "FeatureCollection", features: state.drawing ? features : []});
}

function finishDrawing(map, state) {
  if (state.vertices.length < 3) {
    message("至少需要三个顶点 A polygon needs at least three vertices");
    return;
  }
  const ring = [...state.vertices, state.vertices[0]];
  stopDrawing(map, state);
  state.vertices = [];
  run(map, state, {geometry: {type: "Polygon", coordinates: [ring]}}, "绘制的范围 the drawn polygon");
}

function clear(map, state) {
  if (state.drawing) stopDrawing(map, state);
  state.vertices = [];
  state.result = null;
  drawSketch(map, state);
  map.getSource("check-conflicts").setData(EMPTY);
  map.getSource("check-project").setData(EMPTY);
  $("check-result").replaceChildren();
}

// -- files -----------------------------------------------------------------------------------------------------

function acceptDrops(zone, take) {
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dropping"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dropping");
    const file = event.dataTransfer.files[0];
    if (file) take(file);
  });
}

/** A dropped or chosen file, sent as the process's `project_file` (base64, with the media type its suffix says). */
async function checkFile(map, state, file) {
  const suffix = file.name.slice(file.name.lastIndexOf(".")).toLowerCase();
  const mediaType = MEDIA_TYPES[suffix];
  if (!mediaType) {
    message(`${file.name}: 不支持的文件 not a GeoJSON (.geojson), zipped Shapefile (.zip) or GeoPackage (.gpkg)`);
    return;
  }
  if (file.size > config.max_upload_mb * 2 ** 20) {
    message(`${file.name}: 文件过大 larger than the ${config.max_upload_mb} MB upload limit`);
    return;
  }
  clear(map, state);
  const value = await base64(file);
  await run(map, state, {project_file: {value, encoding: "base64", mediaType}}, file.name);
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// -- the check and its answer ----------------------------------------------------------------------------------

async function run(map, state, inputs, what) {
  const code = $("check-code").value.trim();
  state.asked = {...inputs, ...(code ? {code} : {}), ...(config.background_crs ? {crs: config.background_crs} : {})};
  message(`检查中 checking ${what} …`, "hint");
  try {
    const result = await json(PROCESS, {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({inputs: state.asked})});
    state.result = result;
    map.getSource("check-project").setData(result.project.geometry);
    map.getSource("check-conflicts").setData(result);
    map.fitBounds(bbox(result.project.geometry), {padding: 60, maxZoom: 17, duration: 0});
    $("check-result").replaceChildren(summary(result, what), table(map, result));
  } catch (error) {
    message(`${what}: ${error.message}`);
  }
}

function message(text, className = "error") {
  $("check-result").replaceChildren(el("p", {className}, text));
}

const ruleTitle = (p) => (config.rules[p.rule_id] ? config.rules[p.rule_id].zh : p.title_zh || p.rule_id);

/** The totals: per rule, and in all. */
function summary(result, what) {
  const byRule = new Map();
  for (const {properties: p} of result.features) {
    const entry = byRule.get(p.rule_id) || {title: ruleTitle(p), count: 0, area: 0};
    entry.count += 1;
    entry.area += p.area_m2;
    byRule.set(p.rule_id, entry);
  }
  const rows = [...byRule].map(([id, e]) => el("tr", {dataset: {rule: id}}, el("td", {}, e.title),
    el("td", {className: "n"}, String(e.count)), el("td", {className: "n"}, m2(e.area))));
  return el("div", {id: "check-summary"},
    el("p", {}, `${what} · 项目面积 project ${m2(result.project.area_m2)} m²`),
    result.features.length ? el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "规则 Rule"), el("th", {}, "处 n"), el("th", {}, "面积 m²"))),
      el("tbody", {}, ...rows),
      el("tfoot", {}, el("tr", {}, el("th", {}, "合计 Total"), el("th", {className: "n", id: "check-count"}, String(result.numberReturned)),
                          el("th", {className: "n", id: "check-total"}, m2(result.conflict_area_m2)))))
      : el("p", {className: "ok", id: "check-none"}, "无冲突 No conflict"));
}

/** What a conflict meets: the other layer (its title when the caller reads it) and the plan codes, project's → its. */
function met(p) {
  const layer = p.layer_b && (layers.find((l) => l.id === p.layer_b)?.title.split(" (")[0] || p.layer_b);
  const codes = p.code_a || p.code_b ? ` ${p.code_a || "—"} → ${p.code_b || "—"}` : "";
  return `${layer || "—"}${codes}`;
}

/** Every conflict: rule, area, district, what it meets and the codes; a click zooms to it. */
function table(map, result) {
  if (!result.features.length) return el("div");
  const rows = result.features.map((feature) => {
    const p = feature.properties;
    const row = el("tr", {dataset: {rule: p.rule_id, area: String(p.area_m2), district: p.district_code || "",
                                    codeA: p.code_a || "", codeB: p.code_b || "", layerB: p.layer_b || ""}},
      el("td", {}, el("span", {className: `severity ${p.severity}`}), ruleTitle(p)),
      el("td", {className: "n"}, m2(p.area_m2)),
      el("td", {}, p.district_name || "—"),
      el("td", {}, met(p)));
    row.addEventListener("click", () => map.fitBounds(bbox(feature.geometry), {padding: 80, maxZoom: 18, duration: 0}));
    return row;
  });
  return el("table", {id: "check-table", className: "rows"},
    el("thead", {}, el("tr", {}, el("th", {}, "规则 Rule"), el("th", {}, "面积 m²"), el("th", {}, "区县 District"),
                        el("th", {}, "所涉 Meets · 用地 codes"))),
    el("tbody", {}, ...rows));
}
