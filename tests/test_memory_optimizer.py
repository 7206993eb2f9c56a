"""The memory optimizer turns free GPU memory into engine settings; with no GPU it picks CPU settings."""

from __future__ import annotations

from maoocr.config import ModelConfig
from maoocr.engines.memory import GpuInfo, derive_engine_settings, read_gpus


def gpu(index: int, free_mb: int, total_mb: int = 81_559) -> GpuInfo:
    return GpuInfo(index=index, name="H100", total_mb=total_mb, free_mb=free_mb, used_mb=total_mb - free_mb)


def test_this_machine_has_no_gpu_and_gets_cpu_settings():
    gpus = read_gpus()
    settings = derive_engine_settings(ModelConfig(), gpus)
    if not gpus:
        assert settings.device == "cpu" and settings.enforce_eager
        assert "no GPU visible" in settings.reasons[0]


def test_empty_gpu_gets_high_utilization_and_many_sequences():
    settings = derive_engine_settings(ModelConfig(), [gpu(0, 80_000)])
    assert settings.device == "cuda" and 0.9 <= settings.gpu_memory_utilization <= 0.92
    assert settings.max_num_seqs == 512 and settings.tensor_parallel_size == 1


def test_busy_gpu_gets_what_is_free():
    settings = derive_engine_settings(ModelConfig(), [gpu(0, 15_000)])
    assert settings.gpu_memory_utilization == round(15_000 / 81_559 - 0.05, 2)
    assert settings.max_num_seqs == 128
    assert "15000 MiB free" in settings.reasons[0]


def test_config_values_win_and_tp_is_capped():
    model = ModelConfig(gpu_memory_utilization=0.5, max_num_seqs=7, tensor_parallel_size=4)
    settings = derive_engine_settings(model, [gpu(0, 80_000), gpu(1, 80_000)])
    assert (settings.gpu_memory_utilization, settings.max_num_seqs, settings.tensor_parallel_size) == (0.5, 7, 2)
    assert any("tensor_parallel_size 4 > 2" in r for r in settings.reasons)


def test_weights_too_big_suggest_fp8(tmp_path):
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(14 * 1024**3)  # sparse: 14 GiB of "weights" that take no disk
    settings = derive_engine_settings(ModelConfig(model_path=str(tmp_path)), [gpu(0, 12_000, total_mb=16_000)])
    assert settings.quantization == "fp8" and "fp8" in settings.reasons[-1]


def test_stream_interval_groups_tokens_on_gpu_and_config_wins():
    assert derive_engine_settings(ModelConfig(), [gpu(0, 80_000)]).stream_interval == 8
    assert derive_engine_settings(ModelConfig(), [], force_cpu=True).stream_interval == 1
    assert derive_engine_settings(ModelConfig(stream_interval=2), [gpu(0, 80_000)]).stream_interval == 2
    assert derive_engine_settings(ModelConfig(stream_interval=3), []).stream_interval == 3
