// The review sheet's map: the project (blue, outlined over everything) and its conflict pieces (red) from the page's own JSON, on a plain
// background; nothing is fetched from another host. `window.sheet.ready` turns true once the map has drawn.
(function () {
  const data = JSON.parse(document.getElementById('sheet-data').textContent);
  const PROJECT = '#1f5fbf', CONFLICT = '#d7191c';
  const map = new maplibregl.Map({
    container: 'map', attributionControl: false, preserveDrawingBuffer: true,
    style: {
      version: 8,
      sources: {
        project: {type: 'geojson', data: data.project || {type: 'FeatureCollection', features: []}},
        conflicts: {type: 'geojson', data: data.conflicts},
      },
      layers: [
        {id: 'background', type: 'background', paint: {'background-color': '#ffffff'}},
        {id: 'project', type: 'fill', source: 'project', paint: {'fill-color': PROJECT, 'fill-opacity': 0.5}},
        {id: 'conflicts', type: 'fill', source: 'conflicts', paint: {'fill-color': CONFLICT, 'fill-opacity': 0.8}},
        {id: 'project-line', type: 'line', source: 'project', paint: {'line-color': PROJECT, 'line-width': 3}},
      ],
    },
  });
  window.sheet = {map: map, ready: false};
  const bounds = new maplibregl.LngLatBounds();
  const extend = (coordinates) => (typeof coordinates[0] === 'number' ? bounds.extend(coordinates) : coordinates.forEach(extend));
  if (data.project && data.project.geometry) extend(data.project.geometry.coordinates);
  data.conflicts.features.forEach((f) => extend(f.geometry.coordinates));
  if (!bounds.isEmpty()) map.fitBounds(bounds, {padding: 40, duration: 0});
  map.once('idle', () => { window.sheet.ready = true; });
})();
