# The two commands of the README: `make up` runs MaoOCR here (`make up PORT=8001`: another port), `make test`
# runs the tests; `make bench` runs the development benchmarks (ARGS="--only p1,p2" picks some).
# Both install into .venv/ first when pyproject.toml or the setup script changed.
.PHONY: up test bench

.venv/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

up: .venv/.installed
	.venv/bin/maoocr up $(if $(PORT),--port $(PORT))

test: .venv/.installed
	.venv/bin/python -m pytest -q

bench: .venv/.installed
	bash scripts/install_bench_tools.sh
	.venv/bin/python -m bench.run $(ARGS)
