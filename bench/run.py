"""`python -m bench.run [--only p1,p2,p3,p4,intake,claims,burst_end,complexity,reliability,doc_accuracy,ocr_speed,
vlm_pages,up_stop,serve,priority]` (`make bench`): runs benchmarks and prints one JSON line per figure."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile


def _p1(args) -> list[dict]:
    from bench import p1_batching

    model_path, extra = args.model_path, {}
    if args.dummy:
        from bench.dummy_model import build_dummy_model, tokenizer_dir

        model_path = str(build_dummy_model(tempfile.mkdtemp(prefix="maoocr-dummy-"), args.dummy))
        extra = {"tokenizer": str(tokenizer_dir(model_path))}
    if args.stream_interval:
        extra["stream_interval"] = args.stream_interval
    options = p1_batching.P1Options(
        concurrency=args.concurrency, max_tokens=args.max_tokens or 128, model_path=model_path, gpu=args.gpu,
        load_format="dummy" if args.dummy else "auto", max_model_len=args.max_model_len or 1024,
        prompt_words=args.prompt_words or (256 if args.dummy else 0), offline=args.offline,
        extra_model=extra, direct_every_token=args.direct_every_token, api_workers=args.api_workers,
        rounds=args.rounds or 3, client_processes=args.client_processes, stock_intake=args.stock_intake,
        sustained=args.sustained, sustained_rounds=args.sustained_rounds)
    return p1_batching.run(options)


def _intake(args) -> list[dict]:
    from bench import intake

    return intake.run(intake.IntakeOptions())


def _claims(args) -> list[dict]:
    from bench import burst_claims

    return burst_claims.run()


def _burst_end(args) -> list[dict]:
    from bench import burst_end

    return burst_end.run(burst_end.BurstEndOptions(api_workers=args.api_workers))


def _complexity(args) -> list[dict]:
    from bench import complexity_bench

    return complexity_bench.run()


def _up_stop(args) -> list[dict]:
    from bench import up_stop

    return up_stop.run()


def _reliability(args) -> list[dict]:
    from bench import reliability

    return reliability.run()


def _p2(args) -> list[dict]:
    from bench import p2_queue

    return p2_queue.run(p2_queue.P2Options(gpu=args.gpu, api_workers=args.api_workers))


def _p3(args) -> list[dict]:
    from bench import p3_stream

    return p3_stream.run(p3_stream.P3Options(gpu=args.gpu))


def _p4(args) -> list[dict]:
    from bench import p4_ocr

    return p4_ocr.run(p4_ocr.P4Options())


def _doc_accuracy(args) -> list[dict]:
    from bench import doc_accuracy

    def listed(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if value else default

    options = doc_accuracy.DocAccuracyOptions(
        page_types=listed(args.pages, doc_accuracy.PAGE_TYPES),
        variants=listed(args.variants, doc_accuracy.VARIANTS), systems=listed(args.systems, doc_accuracy.SYSTEMS),
        seeds=args.seeds, quick=args.quick, report=args.doc_report)
    return doc_accuracy.run(options)


def _ocr_speed(args) -> list[dict]:
    from bench import ocr_speed

    return ocr_speed.run(ocr_speed.OCRSpeedOptions())


def _vlm_pages(args) -> list[dict]:
    from bench import p5_vlm_pages

    try:
        pages = int(args.pages) if args.pages else 8
    except ValueError:
        raise SystemExit(f"vlm_pages: --pages is a number of pages, not {args.pages!r}") from None
    options = p5_vlm_pages.P5Options(
        pages=pages, max_tokens=args.max_tokens or 16, max_side=args.max_side, rounds=args.rounds or 2,
        gpu=args.gpu, dummy_vlm=args.dummy_vlm, max_model_len=args.max_model_len)
    return p5_vlm_pages.run(options)


def _serve(args) -> list[dict]:
    from bench import serve_compare

    options = serve_compare.ServeOptions(gpu=args.gpu, dummy=args.dummy, rounds=args.rounds or 2,
                                         max_model_len=args.max_model_len or 1024,
                                         stream_interval=args.stream_interval)
    if args.scenarios:
        options.scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
        unknown = set(options.scenarios) - set(serve_compare.SCENARIOS)
        if unknown:
            raise SystemExit(f"serve: unknown scenario(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(serve_compare.SCENARIOS)}")
    return serve_compare.run(options)


def _priority(args) -> list[dict]:
    from bench import priority

    options = priority.PriorityOptions(gpu=args.gpu, bulk_max_tokens=args.max_tokens or 128)
    if args.dummy:
        from bench.dummy_model import build_dummy_model, tokenizer_dir

        options.model_path = str(build_dummy_model(tempfile.mkdtemp(prefix="maoocr-dummy-"), args.dummy))
        options.load_format = "dummy"
        options.extra_model = {"tokenizer": str(tokenizer_dir(options.model_path))}
    if args.gpu:
        options.max_num_seqs, options.window_s = 512, 15.0
    return priority.run(options)


BENCHMARKS = {"p1": _p1, "p2": _p2, "p3": _p3, "p4": _p4, "intake": _intake, "claims": _claims,
              "burst_end": _burst_end, "complexity": _complexity, "reliability": _reliability,
              "doc_accuracy": _doc_accuracy, "ocr_speed": _ocr_speed, "vlm_pages": _vlm_pages,
              "up_stop": _up_stop, "serve": _serve, "priority": _priority}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument("--concurrency", type=int, default=32, help="P1: concurrent jobs")
    parser.add_argument("--max-tokens", type=int,
                        help="P1: output tokens per job (default 128); vlm_pages: per page (default 16); "
                             "priority: a bulk job's mean (default 128)")
    parser.add_argument("--model-path", help="P1: weights to serve (default: the tiny demo model)")
    parser.add_argument("--dummy", choices=["0.5b", "7b"],
                        help="P1, serve, priority: Qwen2.5 architecture with dummy weights")
    parser.add_argument("--scenarios", help="serve: burst,poisson,single (default: all three)")
    parser.add_argument("--gpu", action="store_true",
                        help="P1-P3, vlm_pages, priority: run the worker (and P1/P2/vlm_pages' direct engine) on GPU 0")
    parser.add_argument("--max-model-len", type=int,
                        help="P1: context length (default 1024); vlm_pages: 2048, 4096 with --dummy-vlm")
    parser.add_argument("--prompt-words", type=int, default=0, help="P1: WordLevel prompt length (with --dummy)")
    parser.add_argument("--offline", action="store_true", help="P1: also time offline LLM.generate")
    parser.add_argument("--client-processes", type=int, default=0,
                        help="P1: processes firing the API requests (default: min(8, cores))")
    parser.add_argument("--rounds", type=int,
                        help="P1, vlm_pages: measured rounds per path, alternating (default 3, vlm_pages 2)")
    parser.add_argument("--sustained", type=int, default=0, metavar="K",
                        help="P1: after the bursts, rounds where each of --concurrency clients sends K jobs in turn "
                             "(output lengths spread over max_tokens/2..3*max_tokens/2)")
    parser.add_argument("--sustained-rounds", type=int, default=2, help="P1: measured sustained rounds per path")
    parser.add_argument("--stream-interval", type=int, help="P1: the engine's stream_interval (default: its own); serve: "
                                                                    "both products' (default: each its own)")
    parser.add_argument("--api-workers", type=int, default=0,
                        help="P1, P2, burst_end: serve the API with gunicorn gthread, this many processes (default 0: one "
                             "`maoocr api` process)")
    parser.add_argument("--direct-every-token", action="store_true",
                        help="P1: also time the engine directly with stream_interval 1 (a delta per token)")
    parser.add_argument("--stock-intake", action="store_true",
                        help="P1: the worker with kombu's stock intake (worker.batched_intake false), for comparison")
    parser.add_argument("--pages", help="doc_accuracy: page types (default: magazine,newspaper,paper,invoice,letter); "
                                         "vlm_pages: pages in the document (default 8)")
    parser.add_argument("--dummy-vlm", choices=["qwen2-vl-2b", "qwen2-vl-7b"],
                        help="vlm_pages: that Qwen2-VL architecture with dummy weights (GPU hosts: needs torchvision; "
                             "default: the tiny demo VLM)")
    parser.add_argument("--max-side", type=int,
                        help="vlm_pages: page image long side sent to the VLM (default: ocr.vlm_max_side's)")
    parser.add_argument("--variants", help="doc_accuracy: pdf,scan300,scan200 (default: all three)")
    parser.add_argument("--systems", help="doc_accuracy: maoocr,tesseract,pdf_text (default: all three)")
    parser.add_argument("--seeds", type=int, default=2, help="doc_accuracy: pages of each type")
    parser.add_argument("--quick", action="store_true", help="doc_accuracy: one paper page, PDF variant only")
    parser.add_argument("--doc-report", help="doc_accuracy: write per-page scores and failed checks (JSON lines)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in chosen:
        for figure in BENCHMARKS[name](args):
            print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
