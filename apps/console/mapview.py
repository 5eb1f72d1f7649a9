"""The dashboard's map, pure (no ORM): Web Mercator positions of locations in an SVG fitted to them, and
the map tiles under it when a tile server is configured (CPO_MAP_TILE_URL, e.g.
"https://tiles.example.net/{z}/{x}/{y}.png"). Without tiles the map still shows every location."""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE_PX = 256
MAX_LATITUDE = 85.05112878


@dataclass(frozen=True, slots=True)
class Marker:
    key: int
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Tile:
    url: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class MapView:
    width: int
    height: int
    zoom: int
    markers: tuple[Marker, ...]
    tiles: tuple[Tile, ...]


def world_px(latitude: float, longitude: float, zoom: int) -> tuple[float, float]:
    """Web Mercator pixel position at `zoom` (the world is 256·2^zoom pixels wide)."""
    size = TILE_PX * 2**zoom
    lat = math.radians(max(-MAX_LATITUDE, min(MAX_LATITUDE, latitude)))
    x = (longitude + 180.0) / 360.0 * size
    y = (1.0 - math.log(math.tan(lat) + 1.0 / math.cos(lat)) / math.pi) / 2.0 * size
    return x, y


def fit(
    points: list[tuple[int, float, float]],
    *,
    width: int = 640,
    height: int = 360,
    margin: int = 24,
    max_zoom: int = 15,
    tile_url: str = "",
) -> MapView:
    """Fit (key, latitude, longitude) points into a width by height view: the largest zoom at which all of
    them fit inside the margin, centred. Tiles cover the view when `tile_url` is given."""
    if not points:
        return MapView(width, height, 0, (), ())
    zoom = 0
    for candidate in range(max_zoom, -1, -1):
        xs, ys = zip(*(world_px(lat, lon, candidate) for _k, lat, lon in points), strict=True)
        if max(xs) - min(xs) <= width - 2 * margin and max(ys) - min(ys) <= height - 2 * margin:
            zoom = candidate
            break
    xs, ys = zip(*(world_px(lat, lon, zoom) for _k, lat, lon in points), strict=True)
    left = (max(xs) + min(xs)) / 2 - width / 2
    top = (max(ys) + min(ys)) / 2 - height / 2
    markers = tuple(
        Marker(key, round(x - left, 1), round(y - top, 1))
        for (key, _lat, _lon), x, y in zip(points, xs, ys, strict=True)
    )
    tiles: list[Tile] = []
    if tile_url:
        count = 2**zoom
        for tx in range(math.floor(left / TILE_PX), math.floor((left + width) / TILE_PX) + 1):
            for ty in range(
                max(0, math.floor(top / TILE_PX)), min(count, math.floor((top + height) / TILE_PX) + 1)
            ):
                url = (
                    tile_url.replace("{z}", str(zoom)).replace("{x}", str(tx % count)).replace("{y}", str(ty))
                )
                tiles.append(Tile(url, tx * TILE_PX - left, ty * TILE_PX - top))
    return MapView(width, height, zoom, markers, tuple(tiles))
