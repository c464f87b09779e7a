"""The synthetic landscape the generated plans share: urban cores, hills, water, industry, coast.

Every field is a smooth function of position drawn once from the seed, so the land-use plan, the urban
plan and the derived constraint layers agree about where the city, the hills and the farmland are, and
the same seed gives the same landscape whatever the number of patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import Transformer


@dataclass(frozen=True)
class Core:
    """An urban centre: WGS84/CGCS2000 lon/lat, peak intensity, and spread (m)."""

    name: str
    lon: float
    lat: float
    weight: float
    sigma_m: float


@dataclass(frozen=True)
class Zone:
    """A rotated rectangle (lon/lat centre, length × width in m, bearing in degrees from north)."""

    name: str
    lon: float
    lat: float
    length_m: float
    width_m: float
    bearing_deg: float


#: Xiamen's centres: the island (Siming, Huli) is the dense core, the mainland district seats are smaller.
XIAMEN_CORES: tuple[Core, ...] = (
    Core("思明", 118.095, 24.465, 1.00, 4800.0),
    Core("湖里", 118.140, 24.505, 1.00, 4800.0),
    Core("集美", 118.090, 24.595, 0.80, 4800.0),
    Core("海沧", 118.020, 24.500, 0.75, 4500.0),
    Core("同安", 118.155, 24.725, 0.65, 4200.0),
    Core("翔安", 118.245, 24.625, 0.65, 4800.0),
)

#: Gaoqi airport (runway 05/23) and the Haicang / Dongdu port areas.
XIAMEN_AIRPORTS: tuple[Zone, ...] = (Zone("高崎机场", 118.128, 24.544, 3800.0, 1100.0, 52.0),)
XIAMEN_PORTS: tuple[Zone, ...] = (
    Zone("海沧港区", 118.035, 24.455, 5000.0, 2000.0, 20.0),
    Zone("东渡港区", 118.075, 24.490, 3500.0, 1200.0, 25.0),
)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


class _Noise:
    """A smooth random field, roughly N(0, 1): value noise — random lattice values, smoothstep-interpolated
    — summed over a few octaves. Only + and × per point (no transcendental functions), so it is cheap
    and gives the same bits on every machine."""

    def __init__(self, rng: np.random.Generator, size: np.ndarray, wavelengths: tuple[float, ...]) -> None:
        self.octaves = []
        amplitudes = np.sqrt(np.asarray(wavelengths) / max(wavelengths))
        amplitudes = amplitudes / np.sqrt(np.sum(amplitudes**2)) * 1.35  # interpolation shrinks the variance
        for wavelength, amplitude in zip(wavelengths, amplitudes, strict=True):
            nx = int(np.ceil(size[0] / wavelength)) + 3
            ny = int(np.ceil(size[1] / wavelength)) + 3
            lattice = rng.normal(size=(ny, nx))
            offset = rng.uniform(0.0, 1.0, size=2)
            self.octaves.append((wavelength, amplitude, lattice, offset))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """x, y relative to the landscape's origin (m)."""
        out = np.zeros(len(x))
        for wavelength, amplitude, lattice, offset in self.octaves:
            gx = np.clip(x / wavelength + offset[0], 0.0, lattice.shape[1] - 1.000001)
            gy = np.clip(y / wavelength + offset[1], 0.0, lattice.shape[0] - 1.000001)
            i, j = gy.astype(np.int64), gx.astype(np.int64)
            fx, fy = gx - j, gy - i
            fx = fx * fx * (3.0 - 2.0 * fx)
            fy = fy * fy * (3.0 - 2.0 * fy)
            top = lattice[i, j] + (lattice[i, j + 1] - lattice[i, j]) * fx
            bottom = lattice[i + 1, j] + (lattice[i + 1, j + 1] - lattice[i + 1, j]) * fx
            out += amplitude * (top + (bottom - top) * fy)
        return out


@dataclass
class Fields:
    """The landscape sampled at points (all arrays of the points' length)."""

    x: np.ndarray
    y: np.ndarray
    urban: np.ndarray  # 0..1, today's city
    urban_plan: np.ndarray  # 0..1, the planned city (wider)
    hill: np.ndarray  # 0..1
    industry: np.ndarray  # 0..1
    coast_m: np.ndarray  # distance to the coast / land edge
    airport: np.ndarray  # bool
    port: np.ndarray  # bool
    noise: dict[str, np.ndarray] = field(default_factory=dict)  # smooth N(0,1) fields by name


class Landscape:
    """The land polygon (projected CRS, metres) and the seeded fields defined over it."""

    NOISES = ("farm", "forest", "garden", "water", "village", "eco", "paddy", "mix", "fringe")

    def __init__(
        self,
        land: shapely.Geometry,
        seed: int,
        crs: str = "EPSG:4548",
        cores: tuple[Core, ...] = XIAMEN_CORES,
        airports: tuple[Zone, ...] = XIAMEN_AIRPORTS,
        ports: tuple[Zone, ...] = XIAMEN_PORTS,
        coast: shapely.Geometry | None = None,
    ) -> None:
        """`coast`: the sea coast (lines); default the whole edge of `land`. Xiamen's land also borders
        Quanzhou and Zhangzhou, and tidal flats do not belong on those borders."""
        self.land = land
        self.coast = shapely.boundary(land) if coast is None else coast
        self.seed = seed
        self.crs = crs
        shapely.prepare(self.land)
        xmin, ymin, xmax, ymax = land.bounds
        self.origin = np.array([xmin, ymin])
        self.size = np.array([xmax - xmin, ymax - ymin])
        to_xy = Transformer.from_crs("EPSG:4490", crs, always_xy=True)
        self.cores = [(c, *to_xy.transform(c.lon, c.lat)) for c in cores]
        self.airports = [self._zone_polygon(z, to_xy) for z in airports]
        self.ports = [self._zone_polygon(z, to_xy) for z in ports]
        rng = np.random.default_rng([seed, 1])  # the landscape's own stream: independent of patch counts
        self.noise = {name: _Noise(rng, self.size, (9000.0, 3500.0, 1400.0)) for name in self.NOISES}
        self.hill_waves = _Noise(rng, self.size, (16000.0, 7000.0, 3000.0))
        # block-scale fields that make neighbouring patches draw alike (one per plan)
        self.choice = {name: _Noise(rng, self.size, (1200.0, 500.0)) for name in ("land_use", "urban_plan")}
        self.industry_sites = self._industry_sites(rng, 10)
        self._coast_grid = self._coast_distance_grid(250.0, 4200.0)

    @staticmethod
    def _zone_polygon(zone: Zone, to_xy: Transformer) -> shapely.Polygon:
        cx, cy = to_xy.transform(zone.lon, zone.lat)
        b = np.radians(zone.bearing_deg)
        along = np.array([np.sin(b), np.cos(b)]) * zone.length_m / 2.0
        across = np.array([np.cos(b), -np.sin(b)]) * zone.width_m / 2.0
        c = np.array([cx, cy])
        corners = [c - along - across, c + along - across, c + along + across, c - along + across]
        return shapely.Polygon(corners)

    def _industry_sites(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Industrial parks: at the edge of the cores (3–9 km out), on land."""
        sites = []
        attempts = 0
        while len(sites) < count and attempts < 1000:
            attempts += 1
            core, cx, cy = self.cores[rng.integers(len(self.cores))]
            angle = rng.uniform(0.0, 2.0 * np.pi)
            r = rng.uniform(0.8, 2.2) * core.sigma_m
            x, y = cx + r * np.cos(angle), cy + r * np.sin(angle)
            if shapely.contains_xy(self.land, x, y):
                sites.append((x, y, rng.uniform(900.0, 1800.0)))
        return np.array(sites).reshape(-1, 3)

    # ---- fields -------------------------------------------------------------------------------

    def urban_intensity(self, x: np.ndarray, y: np.ndarray, spread: float = 1.0) -> np.ndarray:
        out = np.zeros(len(x))
        for core, cx, cy in self.cores:
            d2 = (x - cx) ** 2 + (y - cy) ** 2
            out = np.maximum(out, core.weight * np.exp(-d2 / (2.0 * (core.sigma_m * spread) ** 2)))
        return out

    def _coast_distance_grid(self, step: float, cap: float) -> tuple[np.ndarray, float]:
        """Distance to the coast on a `step` grid, capped at `cap`: the nearest-segment search runs once
        per grid node, not once per patch."""
        rings = shapely.get_parts(shapely.line_merge(self.coast) if not self.coast.is_empty else self.coast)
        coords, owner = shapely.get_coordinates(rings, return_index=True)
        same = owner[1:] == owner[:-1]
        segments = shapely.linestrings(np.stack([coords[:-1][same], coords[1:][same]], axis=1))
        nx = int(np.ceil(self.size[0] / step)) + 2
        ny = int(np.ceil(self.size[1] / step)) + 2
        gx, gy = np.meshgrid(self.origin[0] + step * np.arange(nx), self.origin[1] + step * np.arange(ny))
        nodes = shapely.points(gx.ravel(), gy.ravel())
        distance = np.full(len(nodes), cap)
        if len(segments) == 0:  # no sea
            return distance.reshape(ny, nx), step
        (found, _), near = shapely.STRtree(segments).query_nearest(
            nodes, max_distance=cap, return_distance=True, all_matches=False
        )
        distance[found] = near
        return distance.reshape(ny, nx), step

    def coast_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (m) to the coast, bilinear on the 250 m grid (±~125 m), capped at 4.2 km."""
        grid, step = self._coast_grid
        gx = np.clip((np.asarray(x) - self.origin[0]) / step, 0.0, grid.shape[1] - 1.000001)
        gy = np.clip((np.asarray(y) - self.origin[1]) / step, 0.0, grid.shape[0] - 1.000001)
        i, j = gy.astype(int), gx.astype(int)
        fy, fx = gy - i, gx - j
        return (
            grid[i, j] * (1 - fx) * (1 - fy)
            + grid[i, j + 1] * fx * (1 - fy)
            + grid[i + 1, j] * (1 - fx) * fy
            + grid[i + 1, j + 1] * fx * fy
        )

    def sample(self, x: np.ndarray, y: np.ndarray) -> Fields:
        """Every field at the points (x, y) in the landscape's CRS."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        lx, ly = x - self.origin[0], y - self.origin[1]
        noise = {name: waves(lx, ly) for name, waves in self.noise.items()}
        urban = np.clip(self.urban_intensity(x, y) * np.exp(0.25 * noise["mix"]), 0.0, 1.0)
        wide = self.urban_intensity(x, y, spread=1.6)
        urban_plan = np.clip(np.maximum(urban * 1.25, 0.8 * wide * np.exp(0.3 * noise["fringe"])), 0.0, 1.0)
        coast = self.coast_distance(x, y)
        north = ly / self.size[1]
        hill = _sigmoid(
            0.9 * self.hill_waves(lx, ly) + 3.0 * north + 1.2 * np.minimum(coast / 4000.0, 1.0) - 4.0 * wide - 1.0
        )
        industry = np.zeros(len(x))
        for sx, sy, radius in self.industry_sites:
            industry = np.maximum(industry, np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2.0 * radius**2)))
        airport = np.zeros(len(x), dtype=bool)
        for zone in self.airports:
            airport |= shapely.contains_xy(zone, x, y)
        port = np.zeros(len(x), dtype=bool)
        for zone in self.ports:
            port |= shapely.contains_xy(zone, x, y) & (coast < 700.0)
        return Fields(x, y, urban, urban_plan, hill, industry, coast, airport, port, noise)

    def uniform_draws(self, which: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draws in (0, 1), about uniform, correlated at block scale (~0.5–1 km): patches smaller than a
        block tend to draw alike, so classes come in districts rather than as salt and pepper."""
        z = 0.8 * self.choice[which](x - self.origin[0], y - self.origin[1]) + 0.6 * rng.normal(size=len(x))
        return 1.0 / (1.0 + np.exp(-1.702 * z))  # the logistic approximation of the normal CDF

    # ---- points -------------------------------------------------------------------------------

    def sample_points(self, n: int, rng: np.random.Generator, urban_weight: float, plan: bool = False) -> np.ndarray:
        """n points on land, denser in the city: density ∝ 1 + urban_weight·urban (rejection sampling)."""
        xmin, ymin = self.origin
        xmax, ymax = self.origin + self.size
        chunks: list[np.ndarray] = []
        have = 0
        while have < n:
            batch = max(4 * (n - have), 1024)
            xy = rng.uniform((xmin, ymin), (xmax, ymax), size=(batch, 2))
            u = rng.uniform(size=batch)
            on_land = shapely.contains_xy(self.land, xy[:, 0], xy[:, 1])
            intensity = self.urban_intensity(xy[:, 0], xy[:, 1], spread=1.3 if plan else 1.0)
            accept = on_land & (u < (1.0 + urban_weight * intensity) / (1.0 + urban_weight))
            chunks.append(xy[accept])
            have += int(accept.sum())
        return np.concatenate(chunks)[:n]
