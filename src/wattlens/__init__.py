"""wattlens: measure, predict and cut what LLM inference costs in time, GPU memory and energy."""

__version__ = "0.1.0"
