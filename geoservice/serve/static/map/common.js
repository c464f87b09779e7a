// What the /map viewer's modules share: the page's configuration, DOM and fetch helpers, the class-colour styles.
/* global maplibregl */

export const config = JSON.parse(document.getElementById("map-config").textContent);
export const SEVERITY = {high: "#c00000", medium: "#ff6a00", low: "#e0a800"};
export const LINES = {red_line: "#00994d", basic_farmland: "#b8860b", dev_boundary: "#8a3ab9", district: "#333333"};
export const PROJECT = "#1f4e9c";
export const TILES = "/tiles/WebMercatorQuad";
export const BACKGROUND = "#f4f3ef";
export const $ = (id) => document.getElementById(id);
export const layers = config.tree.flatMap((group) => group.layers);

/** An element with attributes and children (strings become text: nothing is parsed as HTML). */
export function el(tag, {dataset = {}, ...attributes} = {}, ...children) {
  const node = Object.assign(document.createElement(tag), attributes);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A JSON answer of this server (`url` is a path: a page reached with credentials in its URL may not fetch it). */
export async function json(url, options) {
  const response = await fetch(new URL(url, location.origin), {credentials: "same-origin", ...options});
  const body = await response.json();
  if (!response.ok) throw new Error(body.description || response.statusText);
  return body;
}

/** A number of m² as text with thousands separators, and as hectares. */
export const m2 = (value) => Math.round(value).toLocaleString("en");
export const ha = (value) => (value / 10000).toFixed(2);

/** The bounds of a GeoJSON geometry, or of every feature of a FeatureCollection. */
export function bbox(geojson) {
  const bounds = new maplibregl.LngLatBounds();
  const walk = (c) => (typeof c[0] === "number" ? bounds.extend(c) : c.forEach(walk));
  const geometries = geojson.type === "FeatureCollection" ? geojson.features.map((f) => f.geometry) : [geojson];
  for (const geometry of geometries) if (geometry) walk(geometry.coordinates);
  return bounds;
}

// -- styling ---------------------------------------------------------------------------------------------------

/** The fill colour of a class-code property: its level-2 class's colour, else its level-1 class's, else grey. */
export function classColour(property) {
  const level1 = [], level2 = [];
  for (const [code, {rgb}] of Object.entries(config.colours)) (code.length === 2 ? level1 : level2).push(code, `rgb(${rgb})`);
  const code = ["to-string", ["get", property]];
  return ["match", ["slice", code, 0, 4], ...level2, ["match", ["slice", code, 0, 2], ...level1, "#cccccc"]];
}

/** The MapLibre layers drawing one collection (by its kind) from the vector source `source`, base-map patches
 * coloured by the plan code `colourBy` (land_code or plan_code). */
export function styleLayers(layer, {source = "data", colourBy = "land_code"} = {}) {
  const base = {source, "source-layer": layer.id};
  const fill = (id, color, extra = {}) => ({...base, id, type: "fill", paint: {"fill-color": color, ...extra}});
  const line = (id, color, width, extra = {}) => ({...base, id, type: "line", paint: {"line-color": color, "line-width": width, ...extra}});
  switch (layer.kind) {
    case "basemap": return [fill(layer.id, classColour(colourBy))];
    case "land_use": case "urban_plan": return [fill(layer.id, classColour("class_code"))];
    case "construction": return [fill(layer.id, PROJECT, {"fill-opacity": 0.25}), line(`${layer.id}-outline`, PROJECT, 1.5)];
    case "conflicts": return [
      fill(layer.id, "#c00000", {"fill-pattern": "hatch"}),
      line(`${layer.id}-outline`, ["match", ["get", "severity"], "high", SEVERITY.high, "medium", SEVERITY.medium, SEVERITY.low],
           ["match", ["get", "severity"], "high", 2, 1.2])];
    default: return [line(layer.id, LINES[layer.kind] || "#555555", 2, layer.kind === "district" ? {"line-dasharray": [3, 2]} : {})];
  }
}

/** Red diagonal hatching for the conflicts (drawn here: no sprite is loaded). */
export function hatch(size = 8) {
  const data = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    if ((x + y) % size > 1) continue;
    data.set([200, 0, 0, 255], (y * size + x) * 4);
  }
  return {width: size, height: size, data};
}

// A GCJ-02 background (server.map_tiles_crs: GCJ02, e.g. AMap's tiles): the map's longitudes and latitudes are GCJ-02,
// so tiles, lookups, items and project checks are asked for in GCJ-02 and the overlays sit where that map draws them.
const CRS = config.background_crs ? `crs=${encodeURIComponent(config.background_crs)}` : "";
export const withCrs = (url) => (CRS ? `${url}${url.includes("?") ? "&" : "?"}${CRS}` : url);

/** The dataset's tile URL for the collections `ids` (one request per tile carries them all). */
export function tileUrl(ids) {
  return withCrs(`${location.origin}${TILES}/{z}/{y}/{x}?collections=${ids.join(",")}`);
}

/** The empty style every map of the viewer starts from: the background colour, and the background tiles when the
 * server names them (`server.map_tiles`). */
export function baseStyle() {
  const style = {version: 8, sources: {}, layers: [{id: "background", type: "background", paint: {"background-color": BACKGROUND}}]};
  if (config.background) {
    style.sources.background = {type: "raster", tiles: [config.background], tileSize: 256};
    style.layers.push({id: "background-tiles", type: "raster", source: "background"});
  }
  return style;
}

/** A GeoJSON source `id` on `map` showing `data` (added, or its data replaced). */
export function showGeoJSON(map, id, data) {
  const source = map.getSource(id);
  if (source) source.setData(data);
  else map.addSource(id, {type: "geojson", data});
}

export const EMPTY = {type: "FeatureCollection", features: []};
