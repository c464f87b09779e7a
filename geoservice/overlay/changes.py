"""Area gained and lost per key between two sets of pieces: point-set differences of the pieces of each key, not sums
of their areas (a piece recomputed the same gains and loses nothing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely


def gained_lost(old: np.ndarray, old_keys: pd.DataFrame, new: np.ndarray, new_keys: pd.DataFrame,
                disjoint: bool = False) -> pd.DataFrame:
    """For each distinct key (a row of the key columns, the same columns in both frames): area (m²) of the union of the
    new pieces of that key outside the old ones (`gained_m2`), of the old outside the new (`lost_m2`), and the net.

    `disjoint`: the pieces of each side do not overlap (a base map's patches), so a piece found in both sides with
    the same key and the same coordinates changes neither area and is left out before the unions."""
    columns = list(old_keys.columns)
    both = pd.concat([old_keys.assign(side=0, piece=np.arange(len(old))),
                      new_keys.assign(side=1, piece=np.arange(len(new)))], ignore_index=True)
    if disjoint and len(both):
        both["shape"] = np.concatenate([shapely.to_wkb(old), shapely.to_wkb(new)])
        sides = both.groupby([*columns, "shape"], dropna=False, sort=False)["side"].transform("nunique")
        both = both[sides.to_numpy() < 2].drop(columns="shape")
    rows = []
    for key, group in both.groupby(columns, dropna=False, sort=True):
        was = shapely.union_all(old[group.loc[group["side"] == 0, "piece"].to_numpy()])
        now = shapely.union_all(new[group.loc[group["side"] == 1, "piece"].to_numpy()])
        gained, lost = shapely.area(shapely.difference(now, was)), shapely.area(shapely.difference(was, now))
        if gained > 0 or lost > 0:
            values = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(columns, values)), "gained_m2": round(float(gained), 3),
                         "lost_m2": round(float(lost), 3), "net_m2": round(float(gained - lost), 3)})
    return pd.DataFrame(rows, columns=[*columns, "gained_m2", "lost_m2", "net_m2"])


def change_tables(changes: pd.DataFrame, by: str, district: str = "district") -> dict[str, list[dict[str, object]]]:
    """`gained_lost` per (`by`, `district`) summed per `by` and per district (districts do not overlap, so the sums
    are point-set areas too): {"by_<by>": rows, "by_district": rows}."""
    def totals(column: str) -> list[dict[str, object]]:
        summed = changes.groupby(column, sort=True)[["gained_m2", "lost_m2", "net_m2"]].sum().round(3).reset_index()
        return summed.to_dict("records")

    return {f"by_{by}": totals(by), "by_district": totals(district)}
