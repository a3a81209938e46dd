import pytest

from wattlens.core.errors import BadInput
from wattlens.hw.specs import gpu_spec_by_name, load_gpu_specs, match_gpu_spec


def test_table_loads_in_si_units():
    specs = {s.name: s for s in load_gpu_specs()}
    h100 = specs["NVIDIA H100 SXM 80GB"]
    assert h100.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert h100.fp16_bf16_dense_flops_per_s == pytest.approx(989.5e12)
    assert h100.fp32_flops_per_s == pytest.approx(67e12)
    assert h100.tdp_w == 700 and h100.sm_count == 132 and h100.architecture == "Hopper"
    assert specs["NVIDIA A10G"].fp16_bf16_dense_flops_per_s is None  # blank stays blank, not 0
    assert len(specs) == 14


@pytest.mark.parametrize(
    "nvml_name, row",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM 80GB"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
        ("NVIDIA H200", "NVIDIA H200 SXM 141GB"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB SXM"),
        ("Tesla T4", "NVIDIA T4"),
        ("Tesla V100-SXM2-32GB", "NVIDIA V100 SXM2 32GB"),
        ("NVIDIA A10G", "NVIDIA A10G"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA L40S", "NVIDIA L40S"),
        ("NVIDIA B200", "NVIDIA B200 (HGX 1000W)"),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "NVIDIA RTX PRO 6000 Blackwell Workstation"),
    ],
)
def test_nvml_names_map_to_rows(nvml_name, row):
    assert match_gpu_spec(nvml_name).name == row


@pytest.mark.parametrize(
    "nvml_name",
    ["NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA H800", "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe",
     "NVIDIA L40", "NVIDIA GeForce RTX 4090 D", "NVIDIA GH200 480GB",
     "NVIDIA RTX PRO 6000 Blackwell Server Edition"],
)
def test_variants_without_a_sourced_row_do_not_match(nvml_name):
    assert match_gpu_spec(nvml_name) is None


@pytest.mark.parametrize(
    "short, row",
    [("H100", "NVIDIA H100 SXM 80GB"), ("h200", "NVIDIA H200 SXM 141GB"),
     ("A100-80GB", "NVIDIA A100 80GB SXM"),
     ("a100_40gb", "NVIDIA A100 40GB SXM"), ("H100-PCIe", "NVIDIA H100 PCIe 80GB"), ("l40s", "NVIDIA L40S"),
     ("NVIDIA H100 SXM 80GB", "NVIDIA H100 SXM 80GB"), ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM 80GB")],
)
def test_short_names(short, row):
    assert gpu_spec_by_name(short).name == row


def test_unknown_short_name_is_bad_input():
    with pytest.raises(BadInput, match="H9000"):
        gpu_spec_by_name("H9000")
    with pytest.raises(BadInput):
        gpu_spec_by_name("H100 NVL")
