"""Clock and power-limit control with read-back and guaranteed restore; sweeps and phase policies.

Nothing here touches a GPU's clocks unless the caller passes `allow_clock_control=True` (the CLI's
`--allow-clock-control`). Without it `open_clock_control` raises `ClockControlRefused` before any
setter exists.
"""
