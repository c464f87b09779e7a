// 对比分析 Comparison: a swipe between any two of the caller's layers (two synced maps over the main one, the right
// one clipped at a draggable divider, as maplibre-gl-compare does), and a layer's two versions with the change report
// between them (/collections/{layer}/changes, drawn from its GeoJSON: no older version has tiles).
/* global maplibregl */

import {$, baseStyle, bbox, el, EMPTY, ha, hatch, json, layers, m2, showGeoJSON, styleLayers, tileUrl} from "./common.js";

const CHANGES = {added: {colour: "#2ca02c", name: "新增 added"}, removed: {colour: "#d62728", name: "删除 removed"},
                 changed: {colour: "#ff8c00", name: "变更 changed"}};
const LIST_LIMIT = 200;

/** The comparison tab's two tools on `map`. */
export function comparison(map, tileset) {
  return {swipe: swipeTool(map, tileset), versions: versionTool(map)};
}

// -- the swipe -------------------------------------------------------------------------------------------------

/** What a side of the swipe may show: every layer, the base map once per plan it can be coloured by. */
function choices() {
  return layers.flatMap((layer) => (layer.kind === "basemap"
    ? [{value: `${layer.id}:land_code`, layer, colourBy: "land_code", title: `${layer.title} · 按土规 by land-use plan`},
       {value: `${layer.id}:plan_code`, layer, colourBy: "plan_code", title: `${layer.title} · 按城规 by urban plan`}]
    : [{value: layer.id, layer, colourBy: "land_code", title: layer.title}]));
}

/** Plan A on the left, plan B on the right: the land-use and urban plans, else the base map coloured by each. */
function defaults(all) {
  const find = (kind, colourBy) => all.find((c) => c.layer.kind === kind && (!colourBy || c.colourBy === colourBy));
  return [find("land_use") || find("basemap", "land_code") || all[0],
          find("urban_plan") || find("basemap", "plan_code") || all[1] || all[0]];
}

function swipeTool(map, tileset) {
  const all = choices();
  const state = {left: null, right: null, position: 0.5, all};
  const [left, right] = defaults(all);
  for (const [id, chosen] of [["swipe-left", left], ["swipe-right", right]]) {
    $(id).replaceChildren(...all.map((c) => el("option", {value: c.value, selected: c === chosen}, c.title)));
    $(id).addEventListener("change", () => state.left && restyle(state, tileset));
  }
  $("swipe-toggle").addEventListener("click", () => (state.left ? stopSwipe(map, state) : startSwipe(map, state, tileset)));
  dragDivider(state);
  return {
    state, start: () => startSwipe(map, state, tileset), stop: () => stopSwipe(map, state),
    setPosition: (fraction) => setPosition(state, fraction),
  };
}

function chosen(state, side) {
  return state.all.find((c) => c.value === $(`swipe-${side}`).value);
}

/** The style of one side: the chosen layer alone over the background. */
function sideStyle(choice, tileset) {
  const style = baseStyle();
  style.sources.compare = {type: "vector", tiles: [tileUrl([choice.layer.id])], bounds: tileset.bounds,
                           minzoom: tileset.minzoom, maxzoom: Math.min(tileset.maxzoom, 16)};
  style.layers.push(...styleLayers(choice.layer, {source: "compare", colourBy: choice.colourBy}));
  return style;
}

function startSwipe(map, state, tileset) {
  const camera = {center: map.getCenter(), zoom: map.getZoom(), bearing: map.getBearing(), pitch: map.getPitch()};
  $("swipe").hidden = false;
  const open = (container, side) => {
    const opened = new maplibregl.Map({container, style: sideStyle(chosen(state, side), tileset), ...camera,
                                       attributionControl: false});
    opened.on("styleimagemissing", (event) => {
      if (event.id === "hatch" && !opened.hasImage("hatch")) opened.addImage("hatch", hatch());
    });
    return opened;
  };
  state.left = open("swipe-a", "left");
  state.right = open("swipe-b", "right");
  state.right.addControl(new maplibregl.NavigationControl(), "top-right");
  synchronise(state.left, state.right);
  labels(state);
  setPosition(state, state.position);
  $("swipe-toggle").textContent = "结束卷帘 Stop the swipe";
  window.viewer.swipe = state;
}

function stopSwipe(map, state) {
  map.jumpTo({center: state.left.getCenter(), zoom: state.left.getZoom(), bearing: state.left.getBearing(),
              pitch: state.left.getPitch()});
  state.left.remove();
  state.right.remove();
  state.left = state.right = null;
  $("swipe").hidden = true;
  $("swipe-toggle").textContent = "开始卷帘 Start the swipe";
}

function restyle(state, tileset) {
  state.left.setStyle(sideStyle(chosen(state, "left"), tileset));
  state.right.setStyle(sideStyle(chosen(state, "right"), tileset));
  labels(state);
}

function labels(state) {
  $("swipe-label-a").textContent = `A · ${chosen(state, "left").title}`;
  $("swipe-label-b").textContent = `B · ${chosen(state, "right").title}`;
}

/** Each map follows the other's camera (the guard stops the echo). */
function synchronise(a, b) {
  let following = false;
  const follow = (from, to) => () => {
    if (following) return;
    following = true;
    to.jumpTo({center: from.getCenter(), zoom: from.getZoom(), bearing: from.getBearing(), pitch: from.getPitch()});
    following = false;
  };
  a.on("move", follow(a, b));
  b.on("move", follow(b, a));
}

/** The divider at `fraction` of the width: left of it map A, right of it map B (clipped). */
function setPosition(state, fraction) {
  state.position = Math.min(1, Math.max(0, fraction));
  const percent = `${(state.position * 100).toFixed(3)}%`;
  $("swipe-divider").style.left = percent;
  $("swipe-b").style.clipPath = `inset(0 0 0 ${percent})`;
}

function dragDivider(state) {
  const divider = $("swipe-divider");
  const follow = (event) => {
    const box = $("swipe").getBoundingClientRect();
    setPosition(state, (event.clientX - box.left) / box.width);
  };
  divider.addEventListener("pointerdown", (event) => {
    divider.setPointerCapture(event.pointerId);
    divider.addEventListener("pointermove", follow);
  });
  divider.addEventListener("pointerup", (event) => {
    divider.releasePointerCapture(event.pointerId);
    divider.removeEventListener("pointermove", follow);
  });
  divider.addEventListener("keydown", (event) => {
    const step = {ArrowLeft: -0.02, ArrowRight: 0.02}[event.key];
    if (step) setPosition(state, state.position + step);
  });
}

// -- a layer's two versions ------------------------------------------------------------------------------------

function versionTool(map) {
  const versioned = layers.filter((l) => !["basemap", "conflicts"].includes(l.kind));
  showGeoJSON(map, "changes", EMPTY);
  const colour = ["match", ["get", "change"], ...Object.entries(CHANGES).flatMap(([k, v]) => [k, v.colour]), "#888888"];
  map.addLayer({id: "changes-fill", type: "fill", source: "changes", paint: {"fill-color": colour, "fill-opacity": 0.7}});
  map.addLayer({id: "changes-casing", type: "line", source: "changes", paint: {"line-color": "#ffffff", "line-width": 5}});
  map.addLayer({id: "changes-line", type: "line", source: "changes", paint: {"line-color": colour, "line-width": 3}});
  const state = {report: null};
  $("version-layer").replaceChildren(...versioned.map((l) => el("option", {value: l.id}, l.title)));
  $("version-layer").addEventListener("change", () => loadVersions(state));
  $("version-run").addEventListener("click", () => compareVersions(map, state));
  $("version-clear").addEventListener("click", () => { map.getSource("changes").setData(EMPTY); $("version-result").replaceChildren(); });
  if (versioned.length) loadVersions(state);
  return state;
}

/** The layer's versions in both selects: from the one before the active one to the active one. */
async function loadVersions(state) {
  const layer = $("version-layer").value;
  const {versions} = await json(`/collections/${encodeURIComponent(layer)}/versions`);
  const active = versions.findIndex((v) => v.active);
  const label = (v) => `v${v.version} · ${v.loaded_at.slice(0, 10)} · ${v.features} 要素${v.active ? " · 现行 active" : ""}`;
  const fill = (id, selected) => $(id).replaceChildren(
    ...versions.map((v, i) => el("option", {value: v.version, selected: i === selected}, label(v))));
  fill("version-from", Math.max(0, active - 1));
  fill("version-to", active);
  $("version-run").disabled = versions.length < 2;
  $("version-result").replaceChildren(versions.length < 2
    ? el("p", {className: "hint"}, "只有一个版本 This layer has one version only") : "");
  state.versions = versions;
}

async function compareVersions(map, state) {
  const [layer, from, to] = ["version-layer", "version-from", "version-to"].map((id) => $(id).value);
  $("version-result").replaceChildren(el("p", {className: "hint"}, "计算中 computing the change report …"));
  try {
    const report = await json(`/collections/${encodeURIComponent(layer)}/changes?from=${from}&to=${to}&f=geojson`);
    state.report = report;
    map.getSource("changes").setData(report);
    if (report.features.length) map.fitBounds(bbox(report), {padding: 60, maxZoom: 16, duration: 0});
    $("version-result").replaceChildren(counts(report), byClass(report), changeList(map, report));
  } catch (error) {
    $("version-result").replaceChildren(el("p", {className: "error"}, error.message));
  }
}

const swatch = (change) => el("span", {className: "swatch", style: `background: ${CHANGES[change].colour}`});

function counts(report) {
  const row = (change, label, n) => el("tr", {}, el("td", {}, change in CHANGES ? swatch(change) : "", ` ${label}`),
                                       el("td", {className: "n", dataset: {change}}, String(n)));
  return el("table", {id: "version-counts"},
    el("caption", {}, `v${report.old_version} → v${report.new_version}: ${report.old_features} → ${report.new_features} 要素 features`),
    ...Object.entries(CHANGES).map(([change, {name}]) => row(change, name, report.counts[change])),
    row("unchanged", "未变 unchanged", report.unchanged));
}

function byClass(report) {
  if (!report.by_class.length) return el("p", {className: "hint"}, "各类面积无变化 No class gained or lost area");
  return el("table", {id: "version-classes"},
    el("caption", {}, "按用地分类 By class (ha)"),
    el("tr", {}, el("th", {}, "分类 Class"), el("th", {}, "增 gained"), el("th", {}, "减 lost"), el("th", {}, "净 net")),
    ...report.by_class.map((c) => el("tr", {}, el("td", {}, `${c.code || "—"} ${c.name}`), el("td", {className: "n"}, ha(c.gained_m2)),
                                     el("td", {className: "n"}, ha(c.lost_m2)), el("td", {className: "n"}, ha(c.net_m2)))));
}

/** The changed features (the first LIST_LIMIT); a click zooms to one. */
function changeList(map, report) {
  const items = report.features.slice(0, LIST_LIMIT).map((feature) => {
    const f = feature.properties;
    const codes = f.change === "changed" ? `${f.old_code || "—"} → ${f.new_code || "—"}` : f.old_code || f.new_code || "—";
    const area = f.new_area_m2 ?? f.old_area_m2;
    const item = el("li", {dataset: {change: f.change}}, swatch(f.change),
                    ` ${f.source_id || `#${f.new_id ?? f.old_id}`} · ${codes} · ${m2(area)} m²`,
                    f.what.length ? el("span", {className: "en"}, ` (${f.what.join(", ")})`) : null);
    item.addEventListener("click", () => map.fitBounds(bbox(feature.geometry), {padding: 80, maxZoom: 17, duration: 0}));
    return item;
  });
  const more = report.features.length > LIST_LIMIT ? el("li", {className: "more"}, `… ${report.features.length - LIST_LIMIT} more`) : null;
  return el("ol", {id: "version-list"}, ...items, more);
}
