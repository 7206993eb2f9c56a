"""The tiny local vision-language model (maoocr.engines.demo_vlm) runs on real vLLM with image inputs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# vLLM reads these at import time: no engine-core process, a small KV cache, nothing from the hub, and its
# scratch files (and the IPC sockets, whose paths are capped at 107 characters) in a short private directory.
_SCRATCH = tempfile.mkdtemp(prefix="maoocr-vlm-", dir="/tmp")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(_SCRATCH, "vllm-cache"))
os.environ.setdefault("VLLM_RPC_BASE_PATH", _SCRATCH)
os.environ.setdefault("TMPDIR", _SCRATCH)

import base64  # noqa: E402
import gc  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from maoocr.engines.demo_vlm import IMAGE_PLACEHOLDER, SPECIAL_TOKENS, build_demo_vlm, image_seq_len  # noqa: E402

pytest.importorskip("vllm")

MAX_TOKENS = 8
PROMPT = f"<|im_start|>user\n{IMAGE_PLACEHOLDER}What is written?<|im_end|>\n<|im_start|>assistant\n"


def _image(text: str, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((10, size[1] // 2 - 6), text, fill="black")
    return img


def _data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _chat(img: Image.Image) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(img)}},
                                         {"type": "text", "text": "What is written?"}]}]


@pytest.fixture(scope="module")
def vlm_path(tmp_path_factory):
    return build_demo_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="module")
def llm(vlm_path):
    from vllm import LLM

    # The engine core in its own process: in this one, vLLM's CPU start-up scans every loaded module's attributes,
    # and Flask's context proxies (imported by the API tests of this session) raise when looked at.
    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    try:
        engine = LLM(model=str(vlm_path), enforce_eager=True, max_model_len=1024, limit_mm_per_prompt={"image": 1},
                     seed=0, disable_log_stats=True)
    finally:
        if before is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before
    yield engine
    del engine
    gc.collect()


@pytest.fixture
def sampling():
    from vllm import SamplingParams

    return SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True, temperature=0)


def test_files_and_special_token_ids(vlm_path):
    from transformers import AutoProcessor, AutoTokenizer

    config = json.loads((vlm_path / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    assert (vlm_path / "model.safetensors").stat().st_size < 5 * 2**20
    tok = AutoTokenizer.from_pretrained(vlm_path)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER) == config["image_token_id"]
    assert len(tok) == config["text_config"]["vocab_size"]
    assert tok.convert_tokens_to_ids("<|im_end|>") == config["text_config"]["eos_token_id"]
    assert AutoProcessor.from_pretrained(vlm_path).image_seq_len == image_seq_len()
    text = tok.apply_chat_template(_chat(_image("x", (64, 64))), tokenize=False, add_generation_prompt=True)
    assert text == PROMPT
    assert build_demo_vlm(vlm_path) == vlm_path  # already there: not rebuilt


def test_prompt_with_image_expands_placeholder(llm, sampling, vlm_path):
    image_id = json.loads((vlm_path / "config.json").read_text())["image_token_id"]
    wide, square = _image("Hello 123", (200, 80)), _image("Invoice 42", (300, 300))
    text_only, with_wide, with_square, with_other = llm.generate(
        [{"prompt": PROMPT.replace(IMAGE_PLACEHOLDER, "")},
         {"prompt": PROMPT, "multi_modal_data": {"image": wide}},
         {"prompt": PROMPT, "multi_modal_data": {"image": square}},
         {"prompt": PROMPT, "multi_modal_data": {"image": _image("Total 9.99 EUR", (200, 80))}}],
        sampling, use_tqdm=False)
    for out in (text_only, with_wide, with_square, with_other):
        assert len(out.outputs[0].token_ids) == MAX_TOKENS
    # One <image> becomes 16 image tokens per 112 px tile (+ a global tile) and the tile markers around them.
    assert len(with_wide.prompt_token_ids) > len(text_only.prompt_token_ids) + 2 * image_seq_len()
    assert with_wide.prompt_token_ids.count(image_id) == 3 * image_seq_len()  # 224 x 90 -> 1 x 2 tiles + global
    assert with_square.prompt_token_ids.count(image_id) == 5 * image_seq_len()  # 224 x 224 -> 2 x 2 + global
    # The pixels reach the model: two images of the same size give the same prompt but different answers.
    assert with_other.prompt_token_ids == with_wide.prompt_token_ids
    assert with_other.outputs[0].token_ids != with_wide.outputs[0].token_ids


def test_chat_with_image_url_data_url(llm, sampling):
    from vllm.inputs import TokensPrompt

    img = _image("Hello 123", (200, 80))
    (chat_out,) = llm.chat(_chat(img), sampling_params=sampling, use_tqdm=False)
    assert len(chat_out.outputs[0].token_ids) == MAX_TOKENS
    assert chat_out.prompt.startswith("<|im_start|>user\n")

    # What an engine that applies the chat template itself does: token ids with one <image> + the decoded image.
    tok = llm.get_tokenizer()
    ids = tok.encode(tok.apply_chat_template(_chat(img), tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)
    (tokens_out,) = llm.generate(TokensPrompt(prompt_token_ids=ids, multi_modal_data={"image": img}), sampling,
                                 use_tqdm=False)
    assert len(tokens_out.prompt_token_ids) > len(ids) + 2 * image_seq_len()
    assert tokens_out.prompt_token_ids == chat_out.prompt_token_ids
    assert tokens_out.outputs[0].token_ids == chat_out.outputs[0].token_ids
