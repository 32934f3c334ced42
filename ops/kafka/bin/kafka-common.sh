# Sourced by the wrappers beside it: runs a Kafka tool's main class on the jars `orderflow stack up` cached.
#   ORDERFLOW_HOME           stack home (default: <repo>/.orderflow); jars in $ORDERFLOW_HOME/kafka/libs
#   ORDERFLOW_KAFKA_BOOTSTRAP / ORDERFLOW_KAFKA_HOST / ORDERFLOW_KAFKA_PORT  default --bootstrap-server
#   KAFKA_TOOLS_HEAP         JVM heap of the tool (default 256m); JAVA_HOME picks the JVM

_kafka_bin_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_repo_root="$(cd "$_kafka_bin_dir/../../.." && pwd)"

kafka_tool() {
    local main_class="$1"
    shift
    local home="${ORDERFLOW_HOME:-$_repo_root/.orderflow}"
    local libs="$home/kafka/libs"
    if ! compgen -G "$libs/kafka-tools-*.jar" >/dev/null; then
        echo "error: no Kafka jars in $libs; run \`orderflow stack up\` (or \`python -m ops.stack.jars\`) first" >&2
        return 1
    fi
    local java="java"
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        java="$JAVA_HOME/bin/java"
    elif ! command -v java >/dev/null; then
        echo "error: java not found; run ops/bootstrap.sh or install openjdk-17-jre-headless" >&2
        return 1
    fi
    local args=("$@")
    if [[ " $* " != *" --bootstrap-server "* && " $* " != *" --bootstrap-server="* \
          && " $* " != *" --help "* && " $* " != *" --version "* ]]; then
        local server="${ORDERFLOW_KAFKA_BOOTSTRAP:-${ORDERFLOW_KAFKA_HOST:-127.0.0.1}:${ORDERFLOW_KAFKA_PORT:-9092}}"
        args=(--bootstrap-server "$server" "${args[@]}")
    fi
    exec "$java" "-Xmx${KAFKA_TOOLS_HEAP:-256m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        "-Dlog4j2.configurationFile=$_kafka_bin_dir/../config/tools-log4j2.properties" \
        -cp "$libs/*" "$main_class" "${args[@]}"
}
