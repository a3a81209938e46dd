"""Core layer: units, shared value types, errors and config loading. Imports nothing else of wattlens."""
