"""Unit constants and conversions. Values at rest are SI (seconds, joules, watts, bytes)."""

NS_PER_S = 1_000_000_000
MJ_PER_J = 1000.0  # NVML reports energy in millijoules
MW_PER_W = 1000.0  # NVML reports power in milliwatts
BYTES_PER_GB = 1e9  # decimal GB, as the GPT-OSS study uses
BYTES_PER_GIB = 2**30
J_PER_WH = 3600.0

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
SUPPORTED_DTYPES = tuple(DTYPE_BYTES)


def ns_to_s(ns: int) -> float:
    return ns / NS_PER_S


def mj_to_j(mj: float) -> float:
    return mj / MJ_PER_J


def dtype_bytes(dtype: str) -> int:
    """Bytes per element for a wattlens dtype name (bf16, fp16, fp32)."""
    from wattlens.core.errors import BadInput

    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise BadInput(f"unsupported dtype {dtype!r}; choose one of {', '.join(SUPPORTED_DTYPES)}") from None
