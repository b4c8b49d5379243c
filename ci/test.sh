#!/usr/bin/env bash
# The README's test command: builds the sdist and wheel, installs the wheel
# with its test extras into a fresh venv, starts Cassandra (ci/cassandra) for
# the CQL tests, and runs the whole suite against the installed package, once
# on the compiled core and once more with DNA_NO_EXTENSIONS=1 (the pure build).
#
#   DNA_CQL_HOSTS=host:port  use that CQL server instead of starting one
#   DNA_NO_CASSANDRA=1       do not start Cassandra (CQL tests then skip, with the reason)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${DNA_TEST_VENV:-$root/.venv-test}
python=${PYTHON:-python3}

rm -rf "$venv" dist build
"$python" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip build
python -m build --outdir dist .
wheel=$(ls dist/*.whl)
python -m pip install --quiet "${wheel}[test]"

started_cassandra=0
cleanup() {
  if [ "$started_cassandra" = 1 ]; then
    bash "$root/ci/cassandra/cassandra.sh" stop || true
  fi
}
trap cleanup EXIT

if [ -z "${DNA_CQL_HOSTS:-}" ] && [ -z "${DNA_NO_CASSANDRA:-}" ]; then
  # a node already running (a developer's, another run's) is used and left running
  if ! bash "$root/ci/cassandra/cassandra.sh" status >/dev/null 2>&1; then
    started_cassandra=1
  fi
  bash "$root/ci/cassandra/cassandra.sh" start
  export DNA_CQL_HOSTS="127.0.0.1:${DNA_CASSANDRA_PORT:-9042}"
fi

# run from the repo root so `tests` imports, while `dna` is the installed wheel;
# the whole suite runs twice: on the compiled core, then on its pure-Python twins
# (as msgpack's CI does), so neither build can drift unseen
cd "$root"
python -m pytest -p no:cacheprovider "$@"
DNA_NO_EXTENSIONS=1 python -m pytest -p no:cacheprovider "$@"
