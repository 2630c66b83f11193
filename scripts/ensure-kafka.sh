#!/usr/bin/env bash
# Makes sure the pinned Apache Kafka release (localkafka/pom.xml) is cached as jars: the broker
# (kafka_2.13), Kafka's tools (kafka-tools), the Java client (kafka-clients) and their dependencies,
# copied from Maven Central by `mvn dependency:copy-dependencies`. Checks for Java 17+ and Maven.
# Prints the jar directory on the last line; KAFKA_LIBS overrides where it is, KAFKA_VERSION which
# release (e.g. 3.9.2; default: the pinned one).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pom="$here/localkafka/pom.xml"
version="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")}"
dir="${KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-lag-lab/kafka-$version}"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"

if ! command -v "$java" >/dev/null; then
  echo "kafka: no java found: Apache Kafka $version needs Java 17 or newer (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)" >&2
  exit 1
fi
major="$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
if [ "${major%%.*}" -lt 17 ] 2>/dev/null; then
  echo "kafka: $java is Java $major; Apache Kafka $version needs 17 or newer (set JAVA_HOME)" >&2
  exit 1
fi

if [ -f "$dir/kafka_2.13-$version.jar" ] && [ -f "$dir/kafka-tools-$version.jar" ] && [ -f "$dir/.complete" ]; then
  echo "kafka: Apache Kafka $version jars cached in $dir ($(ls "$dir" | wc -l) jars, Java $major)" >&2
  echo "$dir"
  exit 0
fi

if ! command -v mvn >/dev/null; then
  echo "kafka: Maven (mvn) is needed once to fetch the Apache Kafka $version jars: apt-get install maven" >&2
  exit 1
fi
echo "kafka: fetching Apache Kafka $version jars from Maven Central into $dir (once, about 60 MB)…" >&2
start=$(date +%s)
tmp="$dir.tmp-$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# -B: no progress bars (CI logs); one line per artifact downloaded is enough progress.
mvn -B -f "$pom" -Dkafka.version="$version" dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 |
  while IFS= read -r line; do
    case "$line" in
      *Downloaded*) n=$((${n:-0} + 1)); [ $((n % 20)) -eq 1 ] && printf 'kafka: [%3ss] %3d files downloaded\n' "$(( $(date +%s) - start ))" "$n" >&2 ;;
      *ERROR*|*FAILURE*) echo "$line" >&2 ;;
    esac
  done
if [ ! -f "$tmp/kafka_2.13-$version.jar" ]; then
  echo "kafka: Maven did not deliver kafka_2.13-$version.jar (see the errors above)" >&2
  exit 1
fi
touch "$tmp/.complete"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$tmp" "$dir"
trap - EXIT
echo "kafka: $(ls "$dir" | wc -l) jars in $dir after $(( $(date +%s) - start ))s" >&2
echo "$dir"
