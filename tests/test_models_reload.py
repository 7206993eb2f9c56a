"""The models file is followed while the API runs: a model added to it is listed and accepted at once and served
once its worker starts; a model removed stops taking new jobs; a file that does not validate changes nothing."""

from __future__ import annotations

import time

import requests
import yaml

from devtools.processes import private_stack, start_module, wait_for_job, wait_until


def listed(stack) -> dict[str, int]:
    return {card["id"]: card["workers"]
            for card in requests.get(f"{stack.base_url}/v1/models", timeout=10).json()["data"]}


def eventually(condition, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the API did not follow the models file in time"
        time.sleep(0.3)


def generate(stack, model: str) -> requests.Response:
    return requests.post(f"{stack.base_url}/api/generate", timeout=30,
                         json={"model": model, "prompt": "hello", "max_tokens": 4})


def test_a_model_added_or_removed_applies_without_restarting_the_api(tmp_path, tiny_model):
    with private_stack(tmp_path, str(tiny_model)) as stack:
        api_pid = next(proc for proc in stack.procs if proc.name == "api").popen.pid
        models_file = stack.config.parent / "vllm_models.yaml"
        original = yaml.safe_load(models_file.read_text())
        assert generate(stack, "second").status_code == 404

        added = {**original, "models": {**original["models"], "second": {**original["models"]["tiny"]}}}
        models_file.write_text(yaml.safe_dump(added))
        eventually(lambda: "second" in listed(stack))
        assert listed(stack)["second"] == 0  # listed before any worker serves it
        reply = generate(stack, "second")
        assert reply.status_code == 202, reply.text  # accepted: it waits in the new model's queue
        job = reply.json()["job_id"]

        worker = start_module("worker-second", "workers.main", ["--cpu", "--model", "second"], stack.env,
                              stack.logdir)
        stack.procs.append(worker)
        wait_until(lambda: listed(stack)["second"] == 1, stack.procs, timeout_s=180)
        record = wait_for_job(stack, job)
        assert record["status"] == "succeeded" and record["model"] == "second", record

        # A file that does not validate: refused, the models read before stay in force.
        models_file.write_text("models:\n  tiny: {model_type: audio}\n")
        time.sleep(2.5)
        assert set(listed(stack)) == {"tiny", "second"}
        assert generate(stack, "second").status_code == 202

        models_file.write_text(yaml.safe_dump(original))
        eventually(lambda: "second" not in listed(stack))
        reply = generate(stack, "second")
        assert reply.status_code == 404 and "'second'" in reply.json()["error"]["message"], reply.text
        assert generate(stack, "tiny").status_code == 202
        assert next(proc for proc in stack.procs if proc.name == "api").popen.pid == api_pid
        assert "not reloaded" in (stack.logdir / "api.log").read_text()
