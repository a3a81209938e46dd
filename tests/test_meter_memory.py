from wattlens.meter.memory import cuda_memory_snapshot, cuda_sync, reset_peak


def test_cpu_memory_snapshot_says_why_and_has_no_zeros():
    import torch

    if torch.cuda.is_available():
        snap = cuda_memory_snapshot(0)
        assert snap["reserved_bytes"] >= snap["allocated_bytes"] >= 0
        return
    snap = cuda_memory_snapshot()
    assert set(snap) == {"not_measured_reason"} and "CUDA" in snap["not_measured_reason"]
    assert reset_peak() is not None
    sync = cuda_sync()
    assert sync() is None
