# Developer targets. `make test` is what CI runs (through ci/test.sh).
PYTHON ?= python3

.PHONY: compile debug test quick bench asv clean

compile:            ## build the Cython core in place (src/dna/_core/*.so)
	$(PYTHON) setup.py build_ext --inplace

debug:              ## Cython core with line tracing and bounds checks
	DNA_DEBUG_BUILD=1 $(PYTHON) setup.py build_ext --inplace --force

test:               ## the README's test command: wheel into a fresh venv, Cassandra, pytest
	bash ci/test.sh

quick: compile      ## tests against the in-place build, no Cassandra
	PYTHONPATH=src $(PYTHON) -m pytest -q -x

bench:              ## the seed benchmark on the embedded store
	PYTHONPATH=src $(PYTHON) -m dna bench --ceiling

asv:                ## asv benchmarks against the current checkout
	asv run --python=same --quick

clean:
	rm -rf build dist .venv-test src/*.egg-info .asv
	rm -f src/dna/_core/*.c src/dna/_core/*.so src/dna/_core/*.html src/dna/store/sqlite/*.c src/dna/store/sqlite/*.so
