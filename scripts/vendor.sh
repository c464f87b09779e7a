#!/usr/bin/env bash
# Re-vendor the map library of the /map viewer from the npm registry (the built files are committed, so neither a
# deployment nor `make` needs npm): package.json pins the version, package-lock.json the tarball's integrity.
#   bash scripts/vendor.sh     # after changing the version in package.json: npm install, then this
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund --ignore-scripts
source=node_modules/maplibre-gl
target=geoservice/serve/static/vendor/maplibre-gl
rm -rf "$target" && mkdir -p "$target"
cp "$source/dist/maplibre-gl.css" "$source/LICENSE.txt" "$target/"
sed '/^\/\/# sourceMappingURL=/d' "$source/dist/maplibre-gl.js" > "$target/maplibre-gl.js"  # the maps are not shipped
node -p "require('./$source/package.json').version" > "$target/VERSION"
echo "vendored maplibre-gl $(cat "$target/VERSION") into $target"
