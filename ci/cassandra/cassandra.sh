#!/usr/bin/env bash
# One Apache Cassandra node on loopback for DNA's CQL tests and benchmarks.
#
#   cassandra.sh fetch    download cassandra-all and its runtime jars into lib/ (Maven)
#   cassandra.sh start    fetch if needed, start in the background, wait until CQL answers
#   cassandra.sh wait     wait until the running node listens for CQL clients
#   cassandra.sh status   exit 0 and print the pid when running, exit 1 otherwise
#   cassandra.sh stop     SIGTERM, wait for the process to end (SIGKILL after a while)
#   cassandra.sh kill     SIGKILL at once, no flush (fault tests: a crashed server)
#
# start and stop are idempotent. Settings (environment):
#   DNA_CASSANDRA_PORT          CQL (native) port, default 9042
#   DNA_CASSANDRA_STORAGE_PORT  inter-node port, default 7000
#   DNA_CASSANDRA_WORK          data, commit log, log and pid file, default ci/cassandra/work
#   DNA_CASSANDRA_LIB           where the jars go, default ci/cassandra/lib
#   DNA_CASSANDRA_HEAP          heap size, default 1G
#   DNA_CASSANDRA_TIMEOUT       seconds to wait for readiness, default 180
#   JAVA_HOME                   which Java 17 to use (else `java` on PATH)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=5.0.6
lib=${DNA_CASSANDRA_LIB:-$here/lib}
work=${DNA_CASSANDRA_WORK:-$here/work}
native_port=${DNA_CASSANDRA_PORT:-9042}
storage_port=${DNA_CASSANDRA_STORAGE_PORT:-7000}
heap=${DNA_CASSANDRA_HEAP:-1G}
timeout=${DNA_CASSANDRA_TIMEOUT:-180}
pidfile=$work/cassandra.pid
log=$work/cassandra.log
ready_line="Starting listening for CQL clients"

die() {
  echo "cassandra.sh: $*" >&2
  exit 1
}

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "java not found: install a Java 17 runtime (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
  fi
}

check_java() {
  local java major
  java=$(java_bin)
  # first line looks like: openjdk version "17.0.15" 2025-04-15
  major=$("$java" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')
  if [ "$major" != 17 ]; then
    die "Cassandra $version needs Java 17 here (found '${major:-unknown}' at $java); set JAVA_HOME"
  fi
}

fetched() {
  [ -f "$lib/cassandra-all-$version.jar" ]
}

cmd_fetch() {
  if fetched; then
    echo "cassandra.sh: Cassandra $version already in $lib"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: install Maven 3 (e.g. apt-get install maven) to fetch Cassandra from Maven Central"
  echo "cassandra.sh: fetching Cassandra $version and its runtime jars into $lib"
  mvn -q -B -f "$here/pom.xml" -Dlib.dir="$lib" package || die "maven could not fetch Cassandra (see the output above)"
  fetched || die "maven finished but $lib/cassandra-all-$version.jar is missing"
  echo "cassandra.sh: $(find "$lib" -name '*.jar' | wc -l) jars in $lib"
}

# The pid of our running node, or nothing. A recycled pid is not ours.
running_pid() {
  local pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    grep -q CassandraDaemon "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

# The pid in the pid file if that process is alive, whatever it runs yet: between
# the fork and the exec of java (long on a loaded machine) it is still a shell.
launched_pid() {
  local pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "$pid"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
  mkdir -p "$work/data" "$work/commitlog" "$work/saved_caches" "$work/hints" "$work/cdc_raw"
  sed -e "s|@WORK@|$work|g" -e "s|@NATIVE_PORT@|$native_port|g" \
    -e "s|@STORAGE_PORT@|$storage_port|g" "$here/cassandra.yaml.in" >"$work/cassandra.yaml"
}

# JVM flags: heap, GC and the module exports/opens of Cassandra's conf/jvm17-server.options.
jvm_flags() {
  cat <<EOF
-Xms$heap
-Xmx$heap
-Xss256k
-XX:+UseG1GC
-XX:+ParallelRefProcEnabled
-XX:MaxTenuringThreshold=1
-XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5
-XX:MaxGCPauseMillis=300
-XX:InitiatingHeapOccupancyPercent=70
-XX:+ExitOnOutOfMemoryError
-Djava.net.preferIPv4Stack=true
-Djdk.attach.allowAttachSelf=true
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
-Dlogback.configurationFile=file://$here/logback.xml
-Dcassandra.config=file://$work/cassandra.yaml
-Dcassandra.logdir=$work
-Dcassandra.storagedir=$work
-Dcassandra-foreground=yes
-Dcassandra.skip_wait_for_gossip_to_settle=0
-Dcassandra.ring_delay_ms=0
-Dcassandra.superuser_setup_delay_ms=0
EOF
}

cmd_wait() {
  local pid deadline
  deadline=$((SECONDS + timeout))
  while :; do
    pid=$(running_pid)
    if [ -z "$pid" ] && [ -n "$(launched_pid)" ] && [ "$SECONDS" -lt "$deadline" ]; then
      sleep 0.1 # launched and alive, between fork and exec (or two execs): not "not running"
      continue
    fi
    [ -n "$pid" ] || {
      tail -n 40 "$log" 2>/dev/null >&2 || true
      die "Cassandra is not running (log: $log)"
    }
    if grep -q "$ready_line" "$log" 2>/dev/null; then
      echo "cassandra.sh: Cassandra (pid $pid) answers CQL on 127.0.0.1:$native_port"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$log" >&2 || true
      die "Cassandra (pid $pid) not ready after ${timeout}s (log: $log); still running, stop it with: $0 stop"
    fi
    sleep 1
  done
}

cmd_start() {
  local pid java
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    echo "cassandra.sh: already running (pid $pid)"
    cmd_wait
    return 0
  fi
  check_java
  java=$(java_bin)
  cmd_fetch
  if port_in_use "$native_port"; then
    die "port $native_port is taken by another process; set DNA_CASSANDRA_PORT"
  fi
  if port_in_use "$storage_port"; then
    die "storage port $storage_port is taken by another process; set DNA_CASSANDRA_STORAGE_PORT"
  fi
  write_config
  local -a flags
  mapfile -t flags < <(jvm_flags)
  echo "cassandra.sh: starting Cassandra $version on 127.0.0.1:$native_port (data in $work)"
  # `-cp 'lib/*'` is Java's own wildcard: every jar of lib/ on the class path
  (cd "$here" && exec nohup "$java" "${flags[@]}" -cp "$lib/*" \
    org.apache.cassandra.service.CassandraDaemon >"$log" 2>&1 </dev/null) &
  echo $! >"$pidfile"
  cmd_wait
}

cmd_stop() {
  local pid signal=${1:-TERM} i
  pid=$(running_pid)
  if [ -z "$pid" ]; then
    rm -f "$pidfile"
    echo "cassandra.sh: not running"
    return 0
  fi
  kill "-$signal" "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    if [ "$i" = 45 ]; then
      echo "cassandra.sh: pid $pid ignored SIG$signal for 45s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 1
  done
  kill -0 "$pid" 2>/dev/null && die "pid $pid still alive"
  rm -f "$pidfile"
  echo "cassandra.sh: stopped (pid $pid)"
}

cmd_status() {
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    echo "running pid $pid port $native_port work $work"
  else
    echo "not running (work $work)"
    return 1
  fi
}

case "${1:-}" in
fetch) cmd_fetch ;;
start) cmd_start ;;
wait) cmd_wait ;;
stop) cmd_stop TERM ;;
kill) cmd_stop KILL ;;
status) cmd_status ;;
*)
  echo "usage: $0 {fetch|start|wait|status|stop|kill}" >&2
  exit 2
  ;;
esac
