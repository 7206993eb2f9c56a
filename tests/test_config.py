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


# -- properties (hypothesis) --------------------------------------------------------------------------------------

import tempfile  # noqa: E402  (kept with the property tests that use it)
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from maoocr.auth import ApiKeys, digest  # noqa: E402

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
# Keys a user might really write, so that nested values reach the validators and not only "extra key" errors.
KNOWN_KEYS = st.sampled_from(["redis_url", "limits", "ttls", "queues", "auth", "documents", "ocr", "log_level",
                              "worker", "task_events", "data_dir", "max_tokens", "api_keys", "job_s"])
INT_FIELDS = [("limits", "max_tokens"), ("limits", "max_n"), ("ttls", "job_s"), ("ttls", "stream_s"),
              ("ttls", "heartbeat_s")]
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_main(main: object, env: dict[str, str] | None = None):
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "vllm_models.yaml").write_text(MODELS)
        path = Path(directory) / "maoocr.yaml"
        path.write_text(yaml.safe_dump(main) if not isinstance(main, str) else main)
        return load_settings(path, env=env or {})


@PROPERTY
@given(st.one_of(YAML_VALUES, st.dictionaries(KNOWN_KEYS, YAML_VALUES, max_size=4)))
def test_any_yaml_document_loads_or_fails_with_a_config_error(document):
    """Whatever the file holds, the outcome is settings or a ConfigError naming the file: never a crash."""
    if isinstance(document, dict):
        document = {**document, "models_file": "vllm_models.yaml"}
    try:
        load_main(document)
    except ConfigError as exc:
        assert "maoocr.yaml" in str(exc)


@PROPERTY
@given(st.sampled_from(INT_FIELDS), YAML_VALUES)
def test_a_bounded_integer_is_kept_exactly_or_refused_by_name(field, value):
    section, key = field
    document = {section: {key: value}, "models_file": "vllm_models.yaml"}
    valid = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or \
            (isinstance(value, float) and value.is_integer() and 1 <= value < 2**63) or \
            (isinstance(value, str) and value.strip().isdigit() and value.isascii() and int(value) >= 1)
    try:
        loaded = getattr(getattr(load_main(document), section), key)
    except ConfigError as exc:
        assert not valid, (value, str(exc))
        assert f"{section}.{key}" in str(exc) and "maoocr.yaml" in str(exc)
    else:
        assert valid, (value, loaded)
        assert loaded == int(value)


@PROPERTY
@given(st.sampled_from(INT_FIELDS), st.text(max_size=12))
def test_environment_overrides_are_parsed_or_refused_naming_the_variable(field, text):
    section, key = field
    variable = f"MAOOCR_{section.upper()}__{key.upper()}"
    try:
        loaded = getattr(getattr(load_main("models_file: vllm_models.yaml\n", {variable: text}), section), key)
    except ConfigError as exc:
        assert f"environment {variable}" in str(exc) or "cannot read" in str(exc) or "section" in str(exc), str(exc)
    else:
        assert loaded >= 1 and yaml.safe_load(text) == loaded


@PROPERTY
@given(st.lists(st.text(min_size=1, max_size=40).map(str.strip).filter(lambda k: k and "," not in k
                                                                     and not k.lower().startswith("sha256:")),
                min_size=1, max_size=5, unique=True),
       st.booleans())
def test_every_configured_key_and_no_other_is_accepted(keys, hashed):
    entries = [f"sha256:{digest(k)}" if hashed else k for k in keys]
    settings_keys = load_main("models_file: vllm_models.yaml\n", {"MAOOCR_API_KEYS": ",".join(entries)}).auth.keys()
    assert settings_keys == ApiKeys.parse(entries)
    for key in keys:
        assert settings_keys.owner_of(key) == digest(key)[:16]
        assert settings_keys.owner_of(key + "!") is None or key + "!" in keys
