"""Settings: YAML files validated by pydantic, overridden by `MAOOCR_…` environment variables.

`configs/maoocr.yaml` holds the service settings; the file it names in `models_file` (by default
`configs/vllm_models.yaml`) holds the models. A bad value fails at start-up with the file, the key and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from maoocr.auth import ApiKeys, owner_id
from maoocr.documents import DocumentLimits
from maoocr.errors import ConfigError
from maoocr.store.sentinel import is_sentinel_url, parse_sentinel_url

ENV_PREFIX = "MAOOCR_"
DEFAULT_CONFIG = Path("configs/maoocr.yaml")
# A source checkout's own configs/: commands run from another folder (maoocr on PATH) still find the defaults.
SOURCE_CONFIG = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG


class _Strict(BaseModel):
    # Unknown keys are typos more often than not: refuse them so the user hears about it.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads yes/no/on/off as booleans and pydantic would take them as 1/0: `job_s: yes` must not
        # quietly mean one second.
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation in _NUMBERS:
            raise ValueError("expected a number, not a boolean")
        return value


_NUMBERS = (int, float, int | None, float | None)


class ModelConfig(_Strict):
    """One servable model, as configs/vllm_models.yaml lists it."""

    model_path: str | None = Field(None, description="Local path or hub id; null serves the built-in tiny demo model.")
    model_type: Literal["text", "multimodal"] = "text"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="null: derived from free GPU memory.")
    max_model_len: int = Field(2048, ge=16)
    max_num_seqs: int | None = Field(None, ge=1, description="null: derived by the memory optimizer.")
    max_num_batched_tokens: int | None = Field(
        None, ge=16, description="tokens per engine step; null: 16384 on GPU (what vLLM's offline LLM uses), "
                                 "vLLM's default on CPU.")
    stream_interval: int | None = Field(
        None, ge=1, description="tokens the engine gathers per stream chunk of a request (the first token always "
                                "goes at once); null: 8 on GPU, 1 on CPU. Larger values cut the per-token "
                                "Python work of a busy worker.")
    quantization: str | None = None
    dtype: str = "auto"
    load_format: str = "auto"
    tokenizer: str | None = None
    enforce_eager: bool | None = Field(None, description="null: eager on CPU (fast start), compiled on GPU.")
    trust_remote_code: bool = False
    max_images_per_prompt: int | None = Field(
        None, ge=1, description="multimodal models: images one prompt may carry (vLLM's limit_mm_per_prompt); "
                                "null: 1. Text models take no images.")
    lora_adapters: dict[str, str] = Field(default_factory=dict, description=(
        "LoRA adapters served on this model: name → a local PEFT adapter folder (adapter_config.json and its "
        "weights). A request names one as model '<this model>:<adapter>'."))
    max_loras: int | None = Field(None, ge=1, description=(
        "Adapters one engine step may mix (vLLM's max_loras); null: all of them, at most 4."))
    max_lora_rank: int = Field(16, ge=1, description="Largest adapter rank the engine is sized for.")

    @model_validator(mode="after")
    def _images_need_multimodal(self) -> "ModelConfig":
        if self.max_images_per_prompt is not None and self.model_type != "multimodal":
            raise ValueError("max_images_per_prompt is for model_type multimodal; text models take no images")
        for name in self.lora_adapters:
            if not name or ":" in name or "/" in name:
                raise ValueError(f"lora adapter name {name!r}: a non-empty name without ':' or '/'")
        return self

    def adapter_id(self, name: str) -> int:
        """The adapter's number in the engine (vLLM's lora_int_id): its place in the file, from 1."""
        return list(self.lora_adapters).index(name) + 1

    @property
    def image_limit(self) -> int:
        """How many images one prompt may carry: 0 for a text model."""
        return (self.max_images_per_prompt or 1) if self.model_type == "multimodal" else 0


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
        for name in self.models:
            if ":" in name:  # '<model>:<adapter>' names a LoRA adapter
                raise ValueError(f"model name {name!r}: ':' separates a model from its LoRA adapter")
        if self.api.default_model is not None and self.api.default_model not in self.models:
            raise ValueError(f"api.default_model {self.api.default_model!r} is not one of the models")
        return self


class QueueSettings(_Strict):
    llm_prefix: str = "maoocr.llm"
    ocr: str = "maoocr.ocr"
    ocr_models: str = Field("maoocr.ocr.models", description=(
        "Page steps that wait on a model (VLM OCR, VLM analysis, LLM selection), served by `maoocr worker "
        "--ocr-models`: a thread each, so a page waiting on a model holds no OCR process."))

    def llm_queue(self, model: str) -> str:
        return f"{self.llm_prefix}.{model}"


class Limits(_Strict):
    max_prompt_chars: int = Field(200_000, ge=1)
    max_tokens: int = Field(4096, ge=1)
    max_n: int = Field(8, ge=1)
    max_image_bytes: int = Field(20 * 2**20, ge=1, description="Largest image in a chat message, in bytes "
                                                                  "(pixels: documents.max_pixels).")
    worker_concurrency: int = Field(64, ge=1, description="Jobs one LLM worker feeds its engine at the same time.")
    wait_timeout_s: float = Field(600, gt=0, description="How long a waiting HTTP request holds on to a job.")


class Ttls(_Strict):
    job_s: int = Field(86_400, ge=1, description="Job records and results expire after this.")
    stream_s: int = Field(3_600, ge=1, description="Replayable stream records expire after this.")
    heartbeat_s: int = Field(15, ge=1, description="A worker silent this long is considered gone.")


class WorkerSettings(_Strict):
    """How workers survive death and stop (see README, reliability)."""

    redelivery_timeout_s: int = Field(3600, ge=1, description=(
        "A task unacknowledged this long goes back to its queue (the Redis broker's visibility_timeout): how "
        "soon a killed worker's jobs run again. Set it above your longest job: a live worker's job redelivered "
        "early is not run twice, but the copy waits for it, holding a slot."))
    shutdown_grace_s: float = Field(30, ge=0, description=(
        "On SIGTERM a worker finishes its running jobs for up to this long, then aborts the rest and puts them "
        "back on the queue."))
    batched_intake: bool = Field(True, description=(
        "LLM workers take a burst of queued jobs in one Redis round trip (one Lua script pops them and records "
        "them as unacknowledged) instead of two round trips per job; false: kombu's stock one-at-a-time intake."))


class OCRSettings(_Strict):
    engine: str = Field("rapidocr", description="OCR backend for fast/accurate pages: rapidocr or paddleocr")
    concurrency: int | None = Field(None, ge=1, description="OCR worker processes (default: CPU cores)")
    vlm_model: str | None = Field(None, description="multimodal model that transcribes pages routed to 'vlm'; "
                                                    "null: such pages fall back to 'accurate'")
    vlm_max_tokens: int = Field(2048, ge=16, description="longest VLM transcription of one page")
    vlm_max_side: int = Field(1536, ge=64, description="page image long side sent to a VLM, in pixels")
    vlm_timeout_s: float = Field(300, gt=0, description="VLM transcription of one page; then PP-OCR takes it")
    vlm_ignore_eos: bool = Field(False, description="benchmarks only: every VLM answer runs to vlm_max_tokens and "
                                                    "is taken as the page text")
    model_steps_concurrency: int = Field(256, ge=1, description=(
        "pages one `maoocr worker --ocr-models` keeps waiting on models at once (threads; size it to the "
        "VLM workers' max_num_seqs)"))
    vlm_min_free_mb: int = Field(4096, ge=0, description="auto sends complex pages to 'vlm' only if a GPU has this "
                                                         "many MiB free")
    vlm_max_queue: int = Field(64, ge=1, description="auto sends complex pages to 'vlm' only while the VLM's queue "
                                                     "holds fewer jobs than this")
    analyzer: Literal["heuristic", "vlm"] = Field("heuristic", description="vlm: a vision model rates each page")
    analyzer_model: str | None = Field(None, description="multimodal model for analyzer: vlm (null: vlm_model)")
    selector: Literal["rules", "llm"] = Field("rules", description="llm: a language model picks the strategy")
    selector_model: str | None = Field(None, description="model for selector: llm (null: the default model)")
    assist_timeout_s: float = Field(60, gt=0, description="VLM analysis / LLM selection of one page; then the "
                                                          "heuristic / the rules decide")

    def model_references(self, default_model: str) -> list[tuple[str, str | None, bool]]:
        """(key, model name or None, whether it must see images) for each model the OCR pipeline, as configured,
        sends generation jobs to."""
        wanted: list[tuple[str, str | None, bool]] = [("vlm_model", self.vlm_model, True)]
        if self.analyzer == "vlm":
            wanted.append(("analyzer_model", self.analyzer_model or self.vlm_model, True))
        if self.selector == "llm":
            wanted.append(("selector_model", self.selector_model or default_model, False))
        return wanted

    def model_problems(self, models: "ModelsFile", default_model: str) -> list[tuple[str, str]]:
        """(key, problem) for every model reference that does not resolve to a usable model."""
        problems = []
        for key, name, multimodal in self.model_references(default_model):
            if key == "analyzer_model" and name is None:
                problems.append((key, "analyzer: vlm needs analyzer_model or vlm_model"))
            elif name is not None and name not in models.models:
                problems.append((key, f"model {name!r} is not in the models file "
                                      f"(known: {', '.join(sorted(models.models))})"))
            elif name is not None and multimodal and models.models[name].model_type != "multimodal":
                problems.append((key, f"model {name!r} is model_type {models.models[name].model_type!r}; "
                                      "it must be 'multimodal' to see page images"))
        return problems


class AuthSettings(_Strict):
    api_keys: list[str] = Field(default_factory=list, description=(
        "API keys, each plain or as 'sha256:<hex>' (write the hashed form in files). Empty: auth is off. "
        "MAOOCR_API_KEYS (comma-separated) replaces this list."))

    admin_keys: list[str] = Field(default_factory=list, description=(
        "Keys (same forms as api_keys) that are also API keys and may read every key's usage (GET /v1/usage). "
        "MAOOCR_AUTH__ADMIN_KEYS='[key, ...]' replaces this list."))

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _well_formed(cls, keys: list[str], info: ValidationInfo) -> list[str]:
        try:
            ApiKeys.parse(keys)
        except ConfigError as exc:
            where = "MAOOCR_API_KEYS or auth.api_keys" if info.field_name == "api_keys" else "auth.admin_keys"
            raise ValueError(f"{exc.message} (from {where})") from None
        return keys

    def keys(self) -> ApiKeys:
        """Every key that may call the API: the API keys and the admin keys."""
        return ApiKeys.parse([*self.api_keys, *self.admin_keys])

    def admin_owners(self) -> frozenset[str]:
        """The key ids (owners) of the admin keys."""
        return frozenset(owner_id(d) for d in ApiKeys.parse(self.admin_keys).digests)


class Quota(_Strict):
    tokens_per_day: int | None = Field(None, ge=0, description=(
        "Prompt plus completion tokens a key's jobs may use per UTC day; once reached, new jobs are refused (429) "
        "until midnight UTC. null: no limit."))
    jobs_in_flight: int | None = Field(None, ge=0, description=(
        "Jobs a key may have queued or running at once; past it, new jobs are refused (429). null: no limit."))


class QuotaSettings(_Strict):
    """Limits per API key, checked when a job is submitted. Batch API lines and jobs made without a key (auth off,
    an OCR page's model calls) are never refused."""
    default: Quota = Quota()
    keys: dict[str, Quota] = Field(default_factory=dict, description=(
        "API key id (the first 16 hex digits of the key's sha256) → its limits; a limit it names replaces the "
        "default's (null: none), one it leaves out is the default's."))

    def for_key(self, owner: str) -> Quota:
        own = self.keys.get(owner)
        if own is None:
            return self.default
        return self.default.model_copy(update={name: getattr(own, name) for name in own.model_fields_set})


class WebhookSettings(_Strict):
    secret: str | None = Field(None, description=(
        "Signs every webhook (X-MaoOCR-Signature: HMAC-SHA256). Null: webhooks are off and a job that names a "
        "webhook_url is refused. MAOOCR_WEBHOOKS__SECRET sets it."))
    allow_private: bool = Field(False, description=(
        "Allow targets on loopback, private, link-local and other non-public addresses (a webhook could "
        "otherwise reach services inside your network on the caller's behalf)."))
    key_defaults: dict[str, str] = Field(default_factory=dict, description=(
        "API key id (the `owner` on its jobs: the first 16 hex digits of the key's sha256) → the webhook_url "
        "its jobs get when they name none."))
    timeout_s: float = Field(10.0, gt=0, description="Per delivery attempt.")
    max_attempts: int = Field(8, ge=1, description="Attempts per job before the delivery is given up.")
    backoff_s: float = Field(2.0, gt=0, description="Wait before the first retry; doubles after each failure.")
    max_backoff_s: float = Field(600.0, gt=0)


class PrioritySettings(_Strict):
    """Job priority, 0 (first) to 9 (last), as Celery's Redis transport and vLLM's priority scheduling order them:
    the queue keeps four levels (0-2, 3-5, 6-8, 9) and the engine all ten."""
    interactive: int = Field(3, ge=0, le=9, description=(
        "Jobs from /api/generate, /v1/chat/completions, /v1/completions, /ws/stream and /v1/documents that name none."))
    bulk: int = Field(6, ge=0, le=9, description="Batch API lines and `maoocr ingest` documents that name none.")
    key_defaults: dict[str, int] = Field(default_factory=dict, description=(
        "API key id (the `owner` on its jobs) → the priority of its interactive jobs that name none."))
    interactive_reserve: float = Field(0.0625, ge=0, lt=1, description=(
        "Share of an LLM worker's slots (its concurrency, at least one slot) that bulk jobs - those queued at "
        "`bulk`'s level or below - leave free, so an interactive job starts at once on a worker saturated with "
        "bulk work. 0: none kept."))

    @field_validator("key_defaults")
    @classmethod
    def _in_range(cls, value: dict[str, int]) -> dict[str, int]:
        for key, priority in value.items():
            if not 0 <= priority <= 9:
                raise ValueError(f"priority of key {key!r} is {priority}; priorities run from 0 to 9")
        return value


class BatchSettings(_Strict):
    """The Batch API (`/v1/files`, `/v1/batches`): what one input file may hold, how long files and batches are
    kept in Redis, and how the API processes' batch runners pace themselves."""

    max_lines: int = Field(50_000, ge=1, description="Requests (lines) in one input file (OpenAI's limit too).")
    max_file_bytes: int = Field(100 * 2**20, ge=1, description="Size of one uploaded file (kept in Redis).")
    max_line_bytes: int = Field(10 * 2**20, ge=1, description="Size of one line (a request with its images).")
    file_ttl_s: int = Field(30 * 86_400, ge=60, description="Uploaded files expire this long after the upload.")
    ttl_s: int = Field(30 * 86_400, ge=60, description=(
        "A batch, its answers and its output and error files are kept this long after it ended (and while it "
        "runs, for its completion window and this long again)."))
    min_window_s: int = Field(3600, ge=1, description=(
        "Shortest completion_window accepted; windows are whole hours ('24h', as OpenAI's, or '1h'); below an "
        "hour, '<n>m' and '<n>s' are accepted down to this (tests)."))
    max_window_s: int = Field(7 * 86_400, ge=1, description="Longest completion_window accepted.")
    submit_chunk: int = Field(200, ge=1, description="Lines a batch runner queues per pass over a batch.")
    lease_s: float = Field(60.0, gt=0, description=(
        "A runner holds a batch (or a finished line) this long per pass: a runner that died is replaced after it."))
    sweep_s: float = Field(30.0, gt=0, description=(
        "How often a running batch is checked for line jobs that vanished (expired records), so none hangs."))


class MetricsSettings(_Strict):
    worker_port: int | None = Field(None, ge=0, le=65535, description=(
        "Port of each worker's Prometheus exporter (null: none; 0: any free port, announced in the worker's "
        "heartbeat as metrics_port). `maoocr worker --metrics-port` overrides it."))
    worker_host: str = Field("127.0.0.1", description="Address the worker exporters listen on (0.0.0.0 in "
                                                      "containers).")


class Settings(_Strict):
    redis_url: str = Field("redis://127.0.0.1:6379/0", description=(
        "redis://, rediss:// (TLS) or sentinel://host1:26379,host2:26379/0?master=mymaster (a master chosen by "
        "Redis Sentinel; docs/operations.md)."))
    redis_wait_replicas: int = Field(0, ge=0, description=(
        "Job creation waits (Redis WAIT) until this many replicas hold the new job before the API accepts it, "
        "so a failover cannot lose an accepted job. 0: no wait (asynchronous replication)."))
    redis_wait_timeout_ms: int = Field(1000, ge=1, le=20_000, description=(
        "Longest that wait (below the clients' 30 s socket timeout); a job whose replicas did not answer in time "
        "is accepted anyway, with a warning."))
    models_file: str = "configs/vllm_models.yaml"
    queues: QueueSettings = QueueSettings()
    limits: Limits = Limits()
    ttls: Ttls = Ttls()
    documents: DocumentLimits = DocumentLimits()
    ocr: OCRSettings = OCRSettings()
    metrics: MetricsSettings = MetricsSettings()
    worker: WorkerSettings = WorkerSettings()
    auth: AuthSettings = AuthSettings()
    webhooks: WebhookSettings = WebhookSettings()
    priorities: PrioritySettings = PrioritySettings()
    batches: BatchSettings = BatchSettings()
    quotas: QuotaSettings = QuotaSettings()
    log_level: str = "WARNING"
    task_events: bool = Field(False, description="Celery task events from the start (Flower enables them anyway).")
    stream_timestamps: bool = Field(False, description="Bench/debug: LLM workers stamp each token chunk with "
                                                       "`emitted_at`, the time the engine produced it.")
    data_dir: str = Field(".maoocr", description="Where `maoocr up` keeps its demo model and private Redis.")
    # Filled from models_file by load_settings(); not keys of maoocr.yaml.
    models: ModelsFile | None = Field(None, exclude=True)
    models_path: Path | None = Field(None, exclude=True)  # the models file read (maoocr.models_reload follows it)

    @field_validator("redis_url")
    @classmethod
    def _sentinel_url_well_formed(cls, url: str) -> str:
        if is_sentinel_url(url):
            try:
                parse_sentinel_url(url)
            except ConfigError as exc:
                raise ValueError(exc.message.removeprefix("redis_url: ")) from None
        return url

    def model(self, name: str) -> ModelConfig:
        assert self.models is not None
        return self.models.models[name]

    @property
    def default_model(self) -> str:
        assert self.models is not None
        return self.models.api.default_model or next(iter(self.models.models))

    @property
    def ocr_calls_models(self) -> bool:
        """Whether OCR pages send jobs to models (a VLM reads or rates pages, an LLM selects): then a model-steps
        worker (`maoocr worker --ocr-models`) serves those steps beside the OCR worker."""
        return any(name for _, name, _ in self.ocr.model_references(self.default_model))


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read maoocr.yaml (and the models file it names), apply environment overrides, validate."""
    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    if config_path == DEFAULT_CONFIG and not config_path.exists() and SOURCE_CONFIG.exists():
        config_path = SOURCE_CONFIG
    raw = _read_yaml(config_path) if config_path.exists() else {}
    overridden = _apply_env(raw, env, skip={"CONFIG"})
    env_keys = env.get(ENV_PREFIX + "API_KEYS")
    if env_keys is not None and isinstance(raw.setdefault("auth", {}), dict):
        raw["auth"]["api_keys"] = [k for k in env_keys.split(",") if k.strip()]  # comma-separated, unlike YAML
    settings = _validate(Settings, raw, config_path, overridden)

    models_path = Path(settings.models_file)
    if not models_path.is_absolute() and not models_path.exists() and config_path.exists():
        models_path = config_path.parent / models_path.name
    if not models_path.exists():
        raise ConfigError(f"{models_path}: models file not found (set models_file or MAOOCR_MODELS_FILE)")
    settings.models = read_models_file(models_path)
    settings.models_path = models_path
    problems = settings.ocr.model_problems(settings.models, settings.default_model)
    if problems:  # a page must not discover a misnamed model: say so at start-up
        raise ConfigError(f"{config_path}: ocr.{problems[0][0]}: {problems[0][1]}")
    waits = settings.ocr.vlm_timeout_s + 2 * settings.ocr.assist_timeout_s
    if settings.ocr_calls_models and settings.worker.redelivery_timeout_s <= waits:
        # A page's model steps stay unacknowledged while it waits; redelivered sooner, it would run twice.
        raise ConfigError(f"{config_path}: worker.redelivery_timeout_s ({settings.worker.redelivery_timeout_s}) "
                          f"must exceed the longest wait of a page on models ({waits:g} s: ocr.vlm_timeout_s + "
                          f"2 x ocr.assist_timeout_s)")
    return settings


def read_models_file(path: Path) -> ModelsFile:
    return _validate(ModelsFile, _read_yaml(path), path, set())


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
        # never echo API keys, nor a password in a Redis URL
        got = "" if key.startswith("auth") or key == "redis_url" else f" (got {first.get('input')!r})"
        raise ConfigError(f"{where}: {key}: {first['msg']}{got}") from exc
