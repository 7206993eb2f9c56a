"""Settings: YAML files validated by pydantic, overridden by `MAOOCR_…` environment variables.

`configs/maoocr.yaml` holds the service settings; the file it names in `models_file` (by default
`configs/vllm_models.yaml`) holds the models. A bad value fails at start-up with the file, the key and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maoocr.documents import DocumentLimits
from maoocr.errors import ConfigError

ENV_PREFIX = "MAOOCR_"
DEFAULT_CONFIG = Path("configs/maoocr.yaml")


class _Strict(BaseModel):
    # Unknown keys are typos more often than not: refuse them so the user hears about it.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Strict):
    """One servable model, in the shape of the seed's vllm_models.yaml."""

    model_path: str | None = Field(None, description="Local path or hub id; null serves the built-in tiny demo model.")
    model_type: Literal["text", "multimodal"] = "text"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="null: derived from free GPU memory.")
    max_model_len: int = Field(2048, ge=16)
    max_num_seqs: int | None = Field(None, ge=1, description="null: derived by the memory optimizer.")
    quantization: str | None = None
    dtype: str = "auto"
    load_format: str = "auto"
    tokenizer: str | None = None
    enforce_eager: bool | None = Field(None, description="null: eager on CPU (fast start), compiled on GPU.")
    trust_remote_code: bool = False


class ApiSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    default_model: str | None = None


class ModelsFile(_Strict):
    models: dict[str, ModelConfig]
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _default_model_exists(self) -> "ModelsFile":
        if not self.models:
            raise ValueError("at least one model must be configured")
        if self.api.default_model is not None and self.api.default_model not in self.models:
            raise ValueError(f"api.default_model {self.api.default_model!r} is not one of the models")
        return self


class QueueSettings(_Strict):
    llm_prefix: str = "maoocr.llm"
    ocr: str = "maoocr.ocr"

    def llm_queue(self, model: str) -> str:
        return f"{self.llm_prefix}.{model}"


class Limits(_Strict):
    max_prompt_chars: int = Field(200_000, ge=1)
    max_tokens: int = Field(4096, ge=1)
    max_n: int = Field(8, ge=1)
    worker_concurrency: int = Field(64, ge=1, description="Jobs one LLM worker feeds its engine at the same time.")
    wait_timeout_s: float = Field(600, gt=0, description="How long a waiting HTTP request holds on to a job.")


class Ttls(_Strict):
    job_s: int = Field(86_400, ge=1, description="Job records and results expire after this.")
    stream_s: int = Field(3_600, ge=1, description="Replayable stream records expire after this.")
    heartbeat_s: int = Field(15, ge=1, description="A worker silent this long is considered gone.")


class OCRSettings(_Strict):
    engine: str = Field("rapidocr", description="OCR backend for fast/accurate pages: rapidocr or paddleocr")
    concurrency: int | None = Field(None, ge=1, description="OCR worker processes (default: CPU cores)")
    vlm_model: str | None = Field(None, description="multimodal model that takes pages routed to 'vlm'")


class Settings(_Strict):
    redis_url: str = "redis://127.0.0.1:6379/0"
    models_file: str = "configs/vllm_models.yaml"
    queues: QueueSettings = QueueSettings()
    limits: Limits = Limits()
    ttls: Ttls = Ttls()
    documents: DocumentLimits = DocumentLimits()
    ocr: OCRSettings = OCRSettings()
    log_level: str = "WARNING"
    task_events: bool = Field(False, description="Celery task events from the start (Flower enables them anyway).")
    data_dir: str = Field(".maoocr", description="Where `maoocr up` keeps its demo model and private Redis.")
    # Filled from models_file by load_settings(); not a key of maoocr.yaml.
    models: ModelsFile | None = Field(None, exclude=True)

    def model(self, name: str) -> ModelConfig:
        assert self.models is not None
        return self.models.models[name]

    @property
    def default_model(self) -> str:
        assert self.models is not None
        return self.models.api.default_model or next(iter(self.models.models))


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read maoocr.yaml (and the models file it names), apply environment overrides, validate."""
    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    raw = _read_yaml(config_path) if config_path.exists() else {}
    overridden = _apply_env(raw, env, skip={"CONFIG"})
    settings = _validate(Settings, raw, config_path, overridden)

    models_path = Path(settings.models_file)
    if not models_path.is_absolute() and not models_path.exists() and config_path.exists():
        models_path = config_path.parent / models_path.name
    if not models_path.exists():
        raise ConfigError(f"{models_path}: models file not found (set models_file or MAOOCR_MODELS_FILE)")
    settings.models = _validate(ModelsFile, _read_yaml(models_path), models_path, set())
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _apply_env(raw: dict[str, Any], env: dict[str, str], skip: set[str]) -> set[str]:
    """MAOOCR_REDIS_URL → redis_url; MAOOCR_LIMITS__MAX_TOKENS → limits.max_tokens. Returns the dotted keys set."""
    overridden = set()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name[len(ENV_PREFIX):] in skip:
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        if keys[0] not in Settings.model_fields or keys[0] == "models":
            continue  # other tools share the prefix (MAOOCR_API_KEYS, …); only settings keys apply here
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment {name}: {key} is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            node[keys[-1]] = value
        overridden.add(".".join(keys))
    return overridden


def _validate(model: type[BaseModel], raw: dict[str, Any], path: Path, from_env: set[str]):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        where = f"environment {ENV_PREFIX}{key.upper().replace('.', '__')}" if key in from_env else str(path)
        raise ConfigError(f"{where}: {key}: {first['msg']} (got {first.get('input')!r})") from exc
