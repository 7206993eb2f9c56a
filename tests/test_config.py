"""Config files and environment overrides: good files load, bad ones fail with the file, the key and the reason."""

from __future__ import annotations

import pytest

from maoocr.config import load_settings
from maoocr.errors import ConfigError

MODELS = "models:\n  m1:\n    model_path: /models/m1\n    max_model_len: 4096\napi:\n  default_model: m1\n"


def write(tmp_path, main: str, models: str = MODELS):
    (tmp_path / "vllm_models.yaml").write_text(models)
    (tmp_path / "maoocr.yaml").write_text(main + "\nmodels_file: vllm_models.yaml\n")
    return tmp_path / "maoocr.yaml"


def test_shipped_config_files_load():
    settings = load_settings("configs/maoocr.yaml", env={})
    assert settings.default_model == "demo" and settings.model("demo").model_path is None
    assert settings.queues.llm_queue("demo") == "maoocr.llm.demo"


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, "redis_url: redis://file:6379/0\nlimits:\n  max_tokens: 100\n")
    settings = load_settings(path, env={"MAOOCR_REDIS_URL": "rediss://:pw@env:6380/1",
                                        "MAOOCR_LIMITS__MAX_TOKENS": "77", "MAOOCR_API_KEYS": "ignored"})
    assert settings.redis_url == "rediss://:pw@env:6380/1" and settings.limits.max_tokens == 77
    assert settings.model("m1").max_model_len == 4096


@pytest.mark.parametrize("main,models,expected", [
    ("limits:\n  max_tokens: -3\n", MODELS, ["maoocr.yaml", "limits.max_tokens", "greater than or equal to 1"]),
    ("redis_ur1: redis://x\n", MODELS, ["maoocr.yaml", "redis_ur1", "Extra inputs are not permitted"]),
    ("", "models:\n  m1:\n    model_type: audio\n", ["vllm_models.yaml", "models.m1.model_type", "'text' or 'multimodal'"]),
    ("", "models:\n  m1:\n    gpu_memory_utilization: 1.5\n", ["vllm_models.yaml", "gpu_memory_utilization", "less than or equal to 1"]),
    ("", "models: {}\n", ["vllm_models.yaml", "at least one model"]),
    ("", MODELS.replace("default_model: m1", "default_model: m2"), ["vllm_models.yaml", "'m2' is not one of the models"]),
    ("", "models: [1, 2\n", ["vllm_models.yaml", "cannot read YAML"]),
])
def test_bad_files_fail_with_file_key_and_reason(tmp_path, main, models, expected):
    path = write(tmp_path, main, models)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    for fragment in expected:
        assert fragment in str(info.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"environment MAOOCR_TTLS__JOB_S: ttls.job_s: Input should be a valid integer"):
        load_settings(path, env={"MAOOCR_TTLS__JOB_S": "soon"})


def test_missing_models_file(tmp_path):
    (tmp_path / "maoocr.yaml").write_text("models_file: /nowhere/models.yaml\n")
    with pytest.raises(ConfigError, match="models file not found"):
        load_settings(tmp_path / "maoocr.yaml", env={})
