import json
import subprocess

from wattlens.hw.environment import capture_environment, capture_gpu_state, git_state
from wattlens.hw.fake import FakeClock, FakeGPU


def test_cpu_only_environment_is_complete():
    env = capture_environment(None, import_torch=False)
    json.dumps(env)
    assert env["gpu_count"] == 0 and env["gpus"] == [] and env["driver_version"] is None
    assert env["python"].count(".") == 2 and env["hostname"] and env["platform"]
    assert env["libraries"]["numpy"] and env["libraries"]["wattlens"]
    assert "nvidia-ml-py" in env["libraries"]
    assert capture_environment([], import_torch=False)["gpu_count"] == 0


def test_environment_with_fake_gpus():
    clock = FakeClock()
    gpus = [FakeGPU(clock, 100.0, index=i) for i in range(2)]
    gpus[1].add_throttle("hw_slowdown", 0.0)
    env = capture_environment(gpus, import_torch=False)
    json.dumps(env)
    assert env["gpu_count"] == 2 and env["gpu_names"] == ["NVIDIA H100 80GB HBM3"] * 2
    assert env["driver_version"] == "580.00.fake" and env["cuda_driver_version"] == "13.0"
    assert env["power_limit_w"] == [700.0, 700.0] and env["persistence_mode"] == [True, True]
    assert env["gpu_state"][1]["throttle_reasons"] == ["hw_slowdown"]
    state = capture_gpu_state(gpus)
    assert state[0]["sm_clock_mhz"] == 1980 and state[0]["temperature_c"] == 35.0
    assert state[0]["power_w"] == 100.0


def test_torch_cuda_version_recorded_when_torch_imports():
    env = capture_environment(None, import_torch=True)
    assert "torch_cuda_version" in env and env["torch_cuda_available"] in (True, False, None)


def test_git_sha_and_dirty_flag(tmp_path):
    assert git_state(str(tmp_path)) == {"git_sha": None, "git_dirty": None}
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    st = git_state(str(tmp_path))
    assert len(st["git_sha"]) == 40 and st["git_dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    assert git_state(str(tmp_path))["git_dirty"] is True
    assert capture_environment(None, import_torch=False, cwd=str(tmp_path))["git_dirty"] is True
