#!/usr/bin/env bash
# One ScyllaDB node in Docker for trying DNA on its distributed store.
#
#   ./run-scylla.sh          start (or reuse) the node and wait until it answers CQL
#   ./run-scylla.sh stop     stop the container (data stays in the volume)
#   ./run-scylla.sh rm       remove the container and its data volume
#   ./run-scylla.sh status   say whether it runs
#   ./run-scylla.sh cqlsh    open cqlsh in the container
#
# Then: dna.ScyllaStore(hosts=["127.0.0.1:9042"]) or DNA_CQL_HOSTS=127.0.0.1:9042.
# ScyllaStore creates its keyspace without tablets (ScyllaDB has no LWT on tablets
# keyspaces). Developer settings (one shard, 1 GB, overprovisioned, developer mode):
# not for production, where ScyllaDB wants its own machines (see its docs).
#
# Settings (environment):
#   DNA_SCYLLA_IMAGE    image, default scylladb/scylla:2025.1.9 (a patch release, pinned)
#   DNA_SCYLLA_NAME     container name, default dna-scylla
#   DNA_SCYLLA_PORT     CQL port published on 127.0.0.1, default 9042
#   DNA_SCYLLA_VOLUME   data volume (/var/lib/scylla), default dna-scylla-data
#   DNA_SCYLLA_MEMORY   memory for ScyllaDB, default 1G
#   DNA_SCYLLA_SMP      CPUs (shards), default 1
#   DNA_SCYLLA_TIMEOUT  seconds to wait for CQL, default 180
set -euo pipefail

image=${DNA_SCYLLA_IMAGE:-scylladb/scylla:2025.1.9}
name=${DNA_SCYLLA_NAME:-dna-scylla}
port=${DNA_SCYLLA_PORT:-9042}
volume=${DNA_SCYLLA_VOLUME:-dna-scylla-data}
memory=${DNA_SCYLLA_MEMORY:-1G}
smp=${DNA_SCYLLA_SMP:-1}
timeout=${DNA_SCYLLA_TIMEOUT:-180}
shard_port=19042 # ScyllaDB's shard-aware CQL port, published as is

die() {
  echo "run-scylla.sh: $*" >&2
  exit 1
}

need_docker() {
  command -v docker >/dev/null 2>&1 ||
    die "docker not found: install Docker (https://docs.docker.com/get-docker/)"
  docker info >/dev/null 2>&1 ||
    die "docker is installed but its daemon cannot be reached (is it running? may you use it?)"
}

state() {
  # running, exited, created... or nothing when there is no such container
  docker inspect --format '{{.State.Status}}' "$name" 2>/dev/null || true
}

cqlsh_ready() {
  docker exec "$name" cqlsh -e "SELECT release_version FROM system.local" >/dev/null 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + timeout))
  echo "run-scylla.sh: waiting for CQL on 127.0.0.1:$port (up to ${timeout}s)"
  until cqlsh_ready; do
    if [ "$(state)" != running ]; then
      docker logs --tail 40 "$name" >&2 || true
      die "container $name stopped while starting (log above)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      docker logs --tail 40 "$name" >&2 || true
      die "ScyllaDB did not answer CQL within ${timeout}s (log above)"
    fi
    sleep 2
  done
  echo "run-scylla.sh: ScyllaDB ($image) answers CQL: DNA_CQL_HOSTS=127.0.0.1:$port"
}

cmd_start() {
  need_docker
  case "$(state)" in
  running)
    echo "run-scylla.sh: $name already runs"
    ;;
  "")
    docker volume create "$volume" >/dev/null
    docker run --detach --name "$name" \
      --publish "127.0.0.1:$port:9042" \
      --publish "127.0.0.1:$shard_port:$shard_port" \
      --volume "$volume:/var/lib/scylla" \
      "$image" \
      --smp "$smp" --memory "$memory" --overprovisioned 1 --developer-mode 1 \
      --rpc-address 0.0.0.0 --broadcast-rpc-address 127.0.0.1 >/dev/null
    ;;
  *)
    docker start "$name" >/dev/null
    ;;
  esac
  wait_ready
}

cmd_stop() {
  need_docker
  if [ "$(state)" = running ]; then
    docker stop "$name" >/dev/null
    echo "run-scylla.sh: stopped $name (data kept in volume $volume)"
  else
    echo "run-scylla.sh: $name is not running"
  fi
}

cmd_rm() {
  need_docker
  if [ -n "$(state)" ]; then
    docker rm --force "$name" >/dev/null
  fi
  docker volume rm --force "$volume" >/dev/null
  echo "run-scylla.sh: removed $name and volume $volume"
}

cmd_status() {
  need_docker
  local s
  s=$(state)
  echo "$name: ${s:-no such container}"
  [ "$s" = running ]
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
rm) cmd_rm ;;
status) cmd_status ;;
cqlsh)
  need_docker
  exec docker exec -it "$name" cqlsh
  ;;
*)
  echo "usage: $0 [start|stop|rm|status|cqlsh]" >&2
  exit 2
  ;;
esac
