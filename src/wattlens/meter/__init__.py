"""Meter layer: named nestable energy windows on the NVML counter, a power timeline sampler,
amplified measurement of short phases, idle baseline, cooldown and memory accounting.
Imports only wattlens.core and wattlens.hw."""

from wattlens.meter.energy import AmplifiedEnergy, EnergyMeter, MIN_UPDATES, WindowHandle, cooldown
from wattlens.meter.sampler import PowerSampler, Timeline

__all__ = ["AmplifiedEnergy", "EnergyMeter", "MIN_UPDATES", "WindowHandle", "cooldown", "PowerSampler",
           "Timeline"]
