// The /map viewer: the dataset's vector tiles on MapLibre GL JS, a layer tree with a legend in the 用地用海 class
// colours, the point lookup on click, and the conflicts panel with review; the project check (check.js) and 对比分析
// (compare.js) in tabs beside them. Everything comes from this server.
/* global maplibregl */

import {$, baseStyle, bbox, config, el, hatch, json, layers, LINES, PROJECT, SEVERITY, styleLayers, TILES, tileUrl, withCrs} from "./common.js";
import {projectCheck} from "./check.js";
import {comparison} from "./compare.js";

const STATUSES = {open: "待处理 open", confirmed: "已确认 confirmed", resolved: "已处理 resolved", waived: "已豁免 waived"};

// -- the map and its tree --------------------------------------------------------------------------------------

const shown = new Set(layers.filter((l) => l.on).map((l) => l.id));
const tileset = await json(withCrs(`${TILES}?f=tilejson`));
const map = new maplibregl.Map({container: "map", style: baseStyle(), bounds: tileset.bounds, fitBoundsOptions: {padding: 20},
                                attributionControl: false});
window.viewer = {map};
map.addControl(new maplibregl.NavigationControl(), "top-right");
map.addControl(new maplibregl.ScaleControl(), "bottom-left");
const colourBy = () => $("colour-by").value;

/** The tile URL carrying the collections switched on (one request per tile). */
function shownTiles() {
  const on = layers.filter((l) => shown.has(l.id)).map((l) => l.id);
  return tileUrl(on.length ? on : [layers[0].id]);
}

function setVisible(layer, visible) {
  visible ? shown.add(layer.id) : shown.delete(layer.id);
  map.getSource("data").setTiles([shownTiles()]);
  for (const drawn of styleLayers(layer)) map.setLayoutProperty(drawn.id, "visibility", visible ? "visible" : "none");
}

function setOpacity(layer, opacity) {
  for (const drawn of styleLayers(layer)) {
    const property = `${drawn.type}-opacity`;
    const full = drawn.paint[property] ?? 1;
    map.setPaintProperty(drawn.id, property, full * opacity);
  }
}

function buildTree() {
  $("tree").replaceChildren(...config.tree.map((group) => el("fieldset", {},
    el("legend", {}, group.title),
    ...group.layers.map((layer) => {
      const box = el("input", {type: "checkbox", checked: shown.has(layer.id), dataset: {layer: layer.id}});
      box.addEventListener("change", () => setVisible(layer, box.checked));
      const slider = el("input", {type: "range", min: 0, max: 1, step: 0.05, value: 1, title: "不透明度 opacity"});
      slider.addEventListener("input", () => setOpacity(layer, Number(slider.value)));
      return el("div", {className: "layer"}, el("label", {}, box, ` ${layer.title}`), slider);
    }))));
}

/** The legend: the level-1 classes (and level-2 classes with a colour of their own), then the other symbols. */
function buildLegend() {
  const swatch = (style) => el("span", {className: "swatch", style});
  const entries = Object.entries(config.colours).sort(([a], [b]) => a.localeCompare(b)).filter(([code, {rgb}]) =>
    code.length === 2 || String(rgb) !== String(config.colours[code.slice(0, 2)].rgb));
  $("legend").replaceChildren(
    ...entries.map(([code, {name, rgb}]) => el("li", {}, swatch(`background: rgb(${rgb})`), ` ${code} ${name}`)),
    ...layers.filter((l) => !["basemap", "land_use", "urban_plan"].includes(l.kind)).map((l) => el("li", {},
      swatch(l.kind === "conflicts" ? `background: repeating-linear-gradient(135deg, ${SEVERITY.high} 0 2px, transparent 2px 6px);`
        + `border: 2px solid ${SEVERITY.high}` : l.kind === "construction" ? `background: ${PROJECT}40; border: 2px solid ${PROJECT}`
        : `border: 2px solid ${LINES[l.kind] || "#555"}`), ` ${l.title}`)));
}

map.on("load", () => {
  map.addImage("hatch", hatch());
  map.addSource("data", {type: "vector", tiles: [shownTiles()], bounds: tileset.bounds, minzoom: tileset.minzoom,
                         maxzoom: Math.min(tileset.maxzoom, 16)});
  for (const layer of layers) for (const drawn of styleLayers(layer, {colourBy: colourBy()})) {
    map.addLayer({...drawn, layout: {visibility: shown.has(layer.id) ? "visible" : "none"}});
  }
  $("colour-by").addEventListener("change", () => {
    for (const layer of layers.filter((l) => l.kind === "basemap")) {
      map.setPaintProperty(layer.id, "fill-color", styleLayers(layer, {colourBy: colourBy()})[0].paint["fill-color"]);
    }
  });
  const check = projectCheck(map);
  window.viewer.check = check;
  window.viewer.compare = comparison(map, tileset);
  map.on("click", (event) => check.click(event) || lookup(event.lngLat));
  buildTree();
  buildLegend();
  buildTabs();
  if (layers.some((l) => l.kind === "conflicts")) loadConflicts();
});

/** The tabs of the right-hand panel: place and conflicts, project check, comparison. */
function buildTabs() {
  const buttons = [...document.querySelectorAll("#tabs button")];
  for (const button of buttons) button.addEventListener("click", () => showTab(button.dataset.tab));
}

function showTab(id) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === id);
  for (const tab of document.querySelectorAll("#panels .tab")) tab.hidden = tab.id !== id;
}

// -- click a place: what every plan says there -----------------------------------------------------------------

const place = (label, ...value) => el("div", {className: "row"}, el("span", {className: "label"}, label), el("span", {}, ...value));
const planClass = (c) => (c ? `${c.code} ${c.name_zh} ${c.name_en}` : "—");

async function lookup(lngLat) {
  showTab("place-tab");
  $("place").hidden = false;
  const body = $("place-body");
  body.replaceChildren("…");
  try {
    const found = await json(withCrs(`/lookup?x=${lngLat.lng.toFixed(7)}&y=${lngLat.lat.toFixed(7)}`));
    const patch = found.patch || {};
    body.replaceChildren(
      place("位置 Point", `${lngLat.lng.toFixed(5)}, ${lngLat.lat.toFixed(5)}`),
      el("div", {className: "codes"},
         place("土规 Land-use plan", el("span", {className: "code", dataset: {plan: "land_use"}}, planClass(patch.land_use))),
         place("城规 Urban plan", el("span", {className: "code", dataset: {plan: "urban_plan"}}, planClass(patch.urban_plan)))),
      place("区县 District", found.district ? `${found.district.name} (${found.district.code})` : "—"),
      place("控制线 Lines", found.protection_lines.length ? el("ul", {}, ...found.protection_lines.map(
        (line) => el("li", {}, `${line.title}: ${line.name || line.source_id || line.feature_id}`))) : "—"),
      place("冲突 Open conflicts", found.conflicts.length ? el("ul", {}, ...found.conflicts.map((c) => el("li", {},
        el("a", {href: `/collections/conflicts/items/${c.id}?f=html`, target: "_blank"}, `#${c.id}`),
        ` ${c.title_zh} (${STATUSES[c.status] || c.status})`,
        layers.some((l) => l.kind === "conflicts") ? el("button", {type: "button", onclick: () => openCase(c.id)}, "审核 review") : null)))
        : "—"));
  } catch (error) {
    body.replaceChildren(el("p", {className: "error"}, error.message));
  }
}

// -- the conflicts panel ---------------------------------------------------------------------------------------

let conflicts = [];

async function loadConflicts() {
  $("conflicts").hidden = false;
  const page = await json("/collections/conflicts/items?f=json&skipGeometry=true&limit=10000"
                          + "&properties=rule_id,severity,district_name,status,area_m2,code_a,code_b");
  conflicts = page.features.map((f) => ({id: f.id, ...f.properties}));
  const ruleTitle = (id) => (config.rules[id] ? config.rules[id].zh : id);
  const options = (select, values, label) => select.append(...values.map((v) => el("option", {value: v}, label(v))));
  const distinct = (key) => [...new Set(conflicts.map((c) => c[key]).filter(Boolean))].sort();
  options($("filter-rule"), distinct("rule_id"), ruleTitle);
  options($("filter-district"), distinct("district_name"), (d) => d);
  options($("filter-status"), Object.keys(STATUSES), (s) => STATUSES[s]);
  for (const id of ["filter-rule", "filter-district", "filter-status"]) $(id).addEventListener("change", showConflicts);
  const counts = (key, label) => {
    const tally = new Map();
    for (const c of conflicts) tally.set(c[key], (tally.get(c[key]) || 0) + 1);
    return el("table", {}, ...[...tally].sort((a, b) => b[1] - a[1]).map(([value, n]) =>
      el("tr", {}, el("td", {}, label(value)), el("td", {className: "n"}, String(n)))));
  };
  $("conflict-counts").replaceChildren(
    el("h3", {}, `按规则 By rule (${conflicts.length})`), counts("rule_id", ruleTitle),
    el("h3", {}, "按区县 By district"), counts("district_name", (d) => d || "—"));
  showConflicts();
}

const LIST_LIMIT = 200;

function showConflicts() {
  const [rule, district, status] = ["filter-rule", "filter-district", "filter-status"].map((id) => $(id).value);
  const matching = conflicts.filter((c) => (!rule || c.rule_id === rule) && (!district || c.district_name === district)
                                           && (!status || c.status === status));
  $("conflict-list").replaceChildren(...matching.slice(0, LIST_LIMIT).map((c) => el("li", {dataset: {id: c.id}},
    el("button", {type: "button", className: "link", onclick: () => openCase(c.id)},
       `#${c.id} ${config.rules[c.rule_id] ? config.rules[c.rule_id].zh : c.rule_id}`),
    ` ${c.district_name || ""} · ${(c.area_m2 / 10000).toFixed(2)} ha · `,
    el("span", {className: `status ${c.status}`}, STATUSES[c.status] || c.status))),
    matching.length > LIST_LIMIT ? el("li", {className: "more"}, `… ${matching.length - LIST_LIMIT} more: filter to narrow`) : null);
}

/** Zoom to conflict `id` and show its review case: status, opinion, history; a reviewer changes the status here. */
async function openCase(id) {
  const [item, document] = await Promise.all([json(withCrs(`/collections/conflicts/items/${id}?f=json`)),
                                              json(`/collections/conflicts/items/${id}/review`)]);
  map.fitBounds(bbox(item.geometry), {padding: 60, maxZoom: 17, duration: 0});
  const {case: c, history, allowed} = document;
  const rule = config.rules[item.properties.rule_id];
  const box = $("case");
  box.hidden = false;
  box.scrollIntoView();
  box.replaceChildren(
    el("h3", {}, `冲突 Conflict #${id} `, el("a", {href: `/collections/conflicts/items/${id}?f=html`, target: "_blank"}, "↗")),
    place("规则 Rule", rule ? `${rule.zh} ${rule.en}` : item.properties.rule_id),
    place("用地 Codes", `${item.properties.code_a || "—"} / ${item.properties.code_b || "—"}`),
    place("状态 Status", el("span", {className: `status ${c.status}`, id: "case-status"}, STATUSES[c.status] || c.status)),
    place("处理意见 Opinion", c.opinion || "—"),
    el("h4", {}, "审核记录 History"),
    history.length ? el("table", {id: "case-history"}, ...history.map((e) => el("tr", {},
      el("td", {}, e.changed_at.slice(0, 16).replace("T", " ")), el("td", {}, e.reviewer),
      el("td", {}, `${e.from_status} → ${e.to_status}`), el("td", {}, e.comment)))) : el("p", {}, "—"),
    config.caller.review ? reviewForm(id, allowed) : el("p", {className: "hint"},
      config.caller.name ? "审核需要 review 权限 (the review scope)" : el("a", {href: "/login?next=/map"}, "登录后审核 Sign in to review")));
}

function reviewForm(id, allowed) {
  const status = el("select", {id: "review-status"}, ...allowed.map((s) => el("option", {value: s}, STATUSES[s] || s)));
  const comment = el("textarea", {id: "review-comment", rows: 2, placeholder: "处理意见 comment"});
  const message = el("p", {className: "error"});
  const form = el("form", {id: "review-form"}, status, comment, el("button", {type: "submit"}, "提交 Set status"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const result = await json(`/collections/conflicts/items/${id}/review`, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({status: status.value, comment: comment.value})});
      const listed = conflicts.find((c) => c.id === id);
      if (listed) listed.status = result.case.status;
      showConflicts();
      await openCase(id);
    } catch (error) {
      message.textContent = error.message;
    }
  });
  return form;
}
