"""Energy-counter reads at selected output tokens of one generation.

A request that generates N tokens passes through the state of every shorter request (same
prefill, same first decode steps), so the cumulative counter read at a few token timestamps gives
the energy of many output lengths from one run (`wattlens.analysis.token_energy` turns the reads
into energies with their uncertainty). The read happens in the backend's token hook, after the
device sync that stamped the token.
"""

from __future__ import annotations

from wattlens.core.errors import BadInput


def select_read_tokens(max_output_tokens: int, n_reads: int = 24) -> list[int]:
    """Tokens at which to read the counter: 1, then roughly log-spaced, always the last one.

    Log spacing puts reads where short outputs need them; reads closer than two counter updates
    add nothing, so callers with slow decode may ask for fewer.
    """
    if max_output_tokens < 1 or n_reads < 2:
        raise BadInput("need max_output_tokens >= 1 and n_reads >= 2")
    picks = {1, max_output_tokens}
    for i in range(n_reads):
        picks.add(max(1, min(max_output_tokens, round(max_output_tokens ** (i / (n_reads - 1))))))
    return sorted(picks)


class TokenEnergyReader:
    """A token hook that reads the GPUs' energy counter at the chosen output tokens.

    `start()` takes the baseline just before the request; `reads(start_ns)` returns
    (token number, seconds since `start_ns`, joules since the baseline) for every read taken.
    """

    def __init__(self, meter, tokens: list[int]) -> None:
        self.meter = meter
        self.tokens = set(tokens)
        self._baseline_mj: int | None = None
        self._raw: list[tuple[int, int, int]] = []

    def start(self) -> None:
        self._raw = []
        self._baseline_mj = self.meter.read_energy_mj()

    def __call__(self, token_index: int, t_ns: int) -> None:
        number = token_index + 1
        if number in self.tokens and self._baseline_mj is not None:
            mj = self.meter.read_energy_mj()
            if mj is not None:
                self._raw.append((number, t_ns, mj))

    def reads(self, start_ns: int) -> tuple[tuple[int, float, float], ...]:
        if self._baseline_mj is None:
            return ()
        return tuple((n, (t - start_ns) / 1e9, (mj - self._baseline_mj) / 1000.0) for n, t, mj in self._raw)
