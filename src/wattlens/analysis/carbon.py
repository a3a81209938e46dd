"""Carbon (gCO2e) from measured energy: a *model*, never a measurement.

    carbon_g = energy_kwh x PUE x grid_intensity_g_per_kwh

The grid intensity is an annual average for a region from a shipped table
(`analysis/data/grid_intensity.csv`, one public source and year per row; regions without a
sourced figure are left out rather than guessed), or a value the user gives. PUE (data-centre
overhead, >= 1) is optional and said when used. Every result carries the label 'modelled'.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from wattlens.core.errors import BadInput

J_PER_KWH = 3.6e6
_TABLE = Path(__file__).parent / "data" / "grid_intensity.csv"


@dataclass(frozen=True)
class GridIntensity:
    region: str
    gco2e_per_kwh: float
    year: int | None
    basis: str
    source: str


@lru_cache(maxsize=1)
def grid_table() -> dict[str, GridIntensity]:
    """The shipped table, keyed by upper-case region code ('US', 'FR', 'WORLD'...)."""
    out: dict[str, GridIntensity] = {}
    with open(_TABLE, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["region"].upper()] = GridIntensity(row["region"], float(row["gco2e_per_kwh"]),
                                                       int(row["year"]) if row["year"] else None,
                                                       row["basis"], row["source"])
    return out


def grid_intensity(region: str | None = None, gco2e_per_kwh: float | None = None) -> GridIntensity:
    """A table row for `region`, or the user's own figure (source 'given by the user')."""
    if gco2e_per_kwh is not None:
        if gco2e_per_kwh < 0:
            raise BadInput(f"grid intensity {gco2e_per_kwh} gCO2e/kWh is negative")
        return GridIntensity(region or "user", float(gco2e_per_kwh), None, "given by the user", "given by the user")
    if not region:
        raise BadInput("choose a region (e.g. US, FR, world) or give a grid intensity in gCO2e/kWh")
    row = grid_table().get(region.upper())
    if row is None:
        raise BadInput(f"no sourced grid intensity for region {region!r}; known: "
                       f"{', '.join(sorted(grid_table()))}; or give one in gCO2e/kWh")
    return row


@dataclass(frozen=True)
class CarbonEstimate:
    carbon_gco2e: float
    energy_j: float
    pue: float | None
    grid: GridIntensity
    label: str = "modelled"

    def to_dict(self) -> dict[str, object]:
        return {"carbon_gco2e": self.carbon_gco2e, "carbon_label": self.label, "carbon_energy_j": self.energy_j,
                "pue": self.pue, "grid_region": self.grid.region, "grid_gco2e_per_kwh": self.grid.gco2e_per_kwh,
                "grid_year": self.grid.year, "grid_basis": self.grid.basis, "grid_source": self.grid.source}


def carbon_from_energy(energy_j: float, region: str | None = None, *, gco2e_per_kwh: float | None = None,
                       pue: float | None = None) -> CarbonEstimate:
    """gCO2e for `energy_j` of (measured) energy, at the region's annual grid intensity and optional PUE."""
    if energy_j is None or energy_j < 0:
        raise BadInput(f"energy {energy_j} J cannot be turned into carbon")
    if pue is not None and pue < 1.0:
        raise BadInput(f"PUE {pue} is below 1")
    grid = grid_intensity(region, gco2e_per_kwh)
    kwh = energy_j / J_PER_KWH * (pue if pue is not None else 1.0)
    return CarbonEstimate(kwh * grid.gco2e_per_kwh, energy_j, pue, grid)
