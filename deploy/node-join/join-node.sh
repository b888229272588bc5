#!/usr/bin/env bash
# deckhand reference node join script.
#
# Joins this machine to its Kubernetes cluster in four phases and reports each one (started/ok)
# to deckhand's POST /hooks/node-join; on any failure an EXIT trap reports `failed` with the exit
# code and the last 4 KiB of the log, and deckhand posts an alert at once.
#
#   discovery  which cluster this node belongs to (CLUSTER, DISCOVERY_URL or a CLUSTER_MAP file)
#              and that cluster's Kubernetes version
#   config     download the kubeadm JoinConfiguration for that cluster and version
#   join       kubeadm join --config <file>
#   ready      wait until the kubelet answers its health check
#
# Run it as root from cloud-init (runcmd) or a PXE post-install hook. Everything is configured
# through the environment or an env file of KEY=value lines (JOIN_ENV_FILE, default
# /etc/deckhand/join-node.env; variables already set in the environment win). See
# join-node.env.example and cluster-map.example next to this script, and README.md (Node-join failures).
#
# Reports are signed exactly as deckhand verifies them:
#   X-Deckhand-Timestamp: <unix seconds>
#   X-Deckhand-Signature: sha256=<hex HMAC-SHA256(DECKHAND_HOOK_SECRET, "<timestamp>.<body>")>
set -euo pipefail
set -o errtrace

readonly SCRIPT_VERSION="1.0.0"
readonly PHASES_HELP="discovery, config, join, ready"

# -- settings -------------------------------------------------------------------------------------
load_env_file() {
  # KEY=value lines; comments and blank lines ignored; nothing in the file is executed.
  local file=$1 line key value
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      key=${BASH_REMATCH[2]}
      value=${BASH_REMATCH[3]}
      if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
        value=${BASH_REMATCH[1]}
      fi
      if [[ -z ${!key+set} ]]; then
        printf -v "$key" '%s' "$value"
        export "${key?}"
      fi
    else
      printf 'join-node: %s: cannot read line: %s\n' "$file" "$line" >&2
      exit 2
    fi
  done <"$file"
}

ENV_FILE=${JOIN_ENV_FILE:-/etc/deckhand/join-node.env}
if [[ -r $ENV_FILE ]]; then
  load_env_file "$ENV_FILE"
fi

DECKHAND_URL=${DECKHAND_URL:-}
HOOK_SECRET=${DECKHAND_HOOK_SECRET:-}
NODE=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
KUBEADM=${KUBEADM:-kubeadm}
read -r -a KUBEADM_EXTRA <<<"${KUBEADM_FLAGS:-}"
ALREADY_JOINED_FILE=${ALREADY_JOINED_FILE:-/etc/kubernetes/kubelet.conf}
KUBELET_HEALTHZ_URL=${KUBELET_HEALTHZ_URL:-http://127.0.0.1:10248/healthz}
READY_TIMEOUT=${READY_TIMEOUT:-300}
READY_POLL=${READY_POLL:-5}
CURL_TIMEOUT=${CURL_TIMEOUT:-30}
REPORT_RETRIES=${REPORT_RETRIES:-3}
LOG_FILE=${LOG_FILE:-/var/log/deckhand-join.log}

PHASE=discovery
CLUSTER_NAME=""
VERSION=""
MINOR=""
CONFIG_FILE=""
FAILURE=""        # what went wrong, in words, for the `failed` report
REPORTED_FAILURE=0
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/deckhand-join.XXXXXX")

# -- logging and failure ----------------------------------------------------------------------------
if ! { : >>"$LOG_FILE"; } 2>/dev/null; then
  LOG_FILE="$WORK_DIR/join.log"
fi

log() {
  printf '%s join-node[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PHASE" "$*" | tee -a "$LOG_FILE" >&2
}

die() {  # die <exit code> <what went wrong>
  FAILURE=$2
  log "error: $2"
  exit "$1"
}

log_tail() {
  # The last 4 KiB, as printable ASCII: control bytes dropped, other bytes shown as '?', so the
  # tail is valid UTF-8 JSON and never grows past deckhand's 4 KiB limit.
  tail -c 4096 "$LOG_FILE" 2>/dev/null | LC_ALL=C tr -d '\000-\010\013\014\016-\037\177' | LC_ALL=C tr '\200-\377' '?'
}

json_escape() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '%s' "$s"
}

report() {  # report <phase> <status> <message> [exit code] [log tail]
  local phase=$1 status=$2 message=$3 code=${4:-} tail=${5:-} body file stamp signature
  if [[ -z $DECKHAND_URL || -z $HOOK_SECRET ]]; then
    log "not reporting $phase $status: DECKHAND_URL or the hook secret is not set"
    return 0
  fi
  body=$(printf '{"cluster":"%s","node":"%s","phase":"%s","status":"%s","message":"%s","log_tail":"%s","script_version":"%s","timestamp":"%s"%s}' \
    "$(json_escape "$CLUSTER_NAME")" "$(json_escape "$NODE")" "$phase" "$status" "$(json_escape "$message")" \
    "$(json_escape "$tail")" "$SCRIPT_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${code:+,\"exit_code\":$code}")
  file="$WORK_DIR/report.json"
  printf '%s' "$body" >"$file"
  stamp=$(date +%s)
  # The secret is on openssl's command line for a moment (the openssl CLI takes HMAC keys no
  # other way); this runs as root during provisioning, before any user workload exists.
  signature=$({ printf '%s.' "$stamp"; cat "$file"; } | openssl dgst -sha256 -hmac "$HOOK_SECRET" -r | cut -d' ' -f1)
  if ! curl -fsS --max-time 10 --retry "$REPORT_RETRIES" --retry-delay 2 \
      -H "Content-Type: application/json" \
      -H "X-Deckhand-Timestamp: $stamp" \
      -H "X-Deckhand-Signature: sha256=$signature" \
      --data-binary "@$file" "${DECKHAND_URL%/}/hooks/node-join" >/dev/null 2>>"$LOG_FILE"; then
    log "warning: could not report $phase $status to $DECKHAND_URL (the join goes on)"
  fi
}

on_exit() {
  local code=$1
  if [[ $code -ne 0 && $REPORTED_FAILURE -eq 0 ]]; then
    REPORTED_FAILURE=1
    [[ -n $FAILURE ]] || FAILURE="exited with code $code during $PHASE"
    report "$PHASE" failed "$FAILURE" "$code" "$(log_tail)"
  fi
  rm -rf "$WORK_DIR"
}
trap 'on_exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap '[[ -n $FAILURE ]] || FAILURE="command failed: ${BASH_COMMAND:0:300}"' ERR

fetch() {  # fetch <url> <file>
  local curl_opts=(-fsSL --max-time "$CURL_TIMEOUT" -o "$2")
  if [[ -n ${CURL_CA_FILE:-} ]]; then
    curl_opts+=(--cacert "$CURL_CA_FILE")
  fi
  curl "${curl_opts[@]}" "$1" 2>>"$LOG_FILE"
}

fill() {  # fill <template>: substitute {cluster} {version} {minor} {node}
  local text=$1
  text=${text//\{cluster\}/$CLUSTER_NAME}
  text=${text//\{version\}/$VERSION}
  text=${text//\{minor\}/$MINOR}
  text=${text//\{node\}/$NODE}
  printf '%s' "$text"
}

# -- phases -----------------------------------------------------------------------------------------
check_settings() {
  local missing=()
  [[ -n $DECKHAND_URL ]] || missing+=(DECKHAND_URL)
  if [[ -z $HOOK_SECRET && -n ${DECKHAND_HOOK_SECRET_FILE:-} ]]; then
    [[ -r $DECKHAND_HOOK_SECRET_FILE ]] || die 2 "DECKHAND_HOOK_SECRET_FILE $DECKHAND_HOOK_SECRET_FILE is not readable"
    IFS= read -r HOOK_SECRET <"$DECKHAND_HOOK_SECRET_FILE" || true
  fi
  [[ -n $HOOK_SECRET ]] || missing+=("DECKHAND_HOOK_SECRET (or DECKHAND_HOOK_SECRET_FILE)")
  [[ -n ${JOIN_CONFIG_URL_TEMPLATE:-} ]] || missing+=(JOIN_CONFIG_URL_TEMPLATE)
  if [[ -z ${CLUSTER:-} && -z ${DISCOVERY_URL:-} && -z ${CLUSTER_MAP:-} ]]; then
    missing+=("CLUSTER, DISCOVERY_URL or CLUSTER_MAP")
  fi
  if ((${#missing[@]})); then
    local joined
    joined=$(printf '%s, ' "${missing[@]}")
    die 2 "missing settings: ${joined%, }"
  fi
  for tool in curl openssl "$KUBEADM"; do
    command -v "$tool" >/dev/null || die 2 "$tool is not installed (or not on PATH)"
  done
  [[ $NODE =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die 2 "node name '$NODE' is not a valid Kubernetes node name; set NODE_NAME"
}

discover() {
  local key value pattern cluster version rest found=0
  if [[ -n ${CLUSTER:-} ]]; then
    CLUSTER_NAME=$CLUSTER
    log "cluster $CLUSTER_NAME (from CLUSTER)"
  elif [[ -n ${DISCOVERY_URL:-} ]]; then
    local url
    url=$(fill "$DISCOVERY_URL")
    fetch "$url" "$WORK_DIR/discovery" || die 3 "discovery: GET $url failed (see the log tail)"
    # The answer is `key=value` lines (cluster=…, version=…) or just the cluster name.
    while IFS='=' read -r key value || [[ -n $key ]]; do
      key=${key//[[:space:]]/}
      value=${value//[[:space:]]/}
      case $key in
        cluster) CLUSTER_NAME=$value ;;
        version) VERSION=$value ;;
        '' | '#'*) ;;
        *) if [[ -z $value && -z $CLUSTER_NAME ]]; then CLUSTER_NAME=$key; fi ;;
      esac
    done <"$WORK_DIR/discovery"
    log "cluster ${CLUSTER_NAME:-?} (from $url)"
  else
    [[ -r $CLUSTER_MAP ]] || die 3 "CLUSTER_MAP file $CLUSTER_MAP is not readable"
    # Lines: <hostname regex> <cluster> [kubernetes version]; the first match wins.
    while read -r pattern cluster version rest || [[ -n $pattern ]]; do
      [[ -z $pattern || $pattern == '#'* ]] && continue
      if [[ $NODE =~ $pattern ]]; then
        CLUSTER_NAME=$cluster
        VERSION=${VERSION:-$version}
        found=1
        break
      fi
    done <"$CLUSTER_MAP"
    ((found)) || die 3 "no pattern in $CLUSTER_MAP matches hostname $NODE"
    log "cluster $CLUSTER_NAME (hostname $NODE matched $pattern in $CLUSTER_MAP)"
  fi
  [[ $CLUSTER_NAME =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die 3 "discovered cluster name '$CLUSTER_NAME' is not valid"

  if [[ -n ${KUBERNETES_VERSION:-} ]]; then
    VERSION=$KUBERNETES_VERSION
  elif [[ -z $VERSION && -n ${VERSION_URL:-} ]]; then
    local url
    url=$(fill "$VERSION_URL")
    fetch "$url" "$WORK_DIR/version" || die 3 "discovery: GET $url for the Kubernetes version failed"
    # An API server's /version answers JSON with gitVersion; a plain file holds just the version.
    VERSION=$(sed -n 's/.*"gitVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$WORK_DIR/version" | head -n1)
    [[ -n $VERSION ]] || VERSION=$(head -n1 "$WORK_DIR/version" | tr -d '[:space:]')
  fi
  [[ -n $VERSION ]] || die 3 "no Kubernetes version for $CLUSTER_NAME: set KUBERNETES_VERSION or VERSION_URL, or have discovery answer version=…"
  if [[ $VERSION =~ ^v?([0-9]+)\.([0-9]+)(\.([0-9]+))? ]]; then
    MINOR="v${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
    VERSION="$MINOR${BASH_REMATCH[3]}"
  else
    die 3 "'$VERSION' is not a Kubernetes version (expected e.g. v1.30.2)"
  fi
  log "Kubernetes $VERSION"
}

download_config() {
  local url
  url=$(fill "$JOIN_CONFIG_URL_TEMPLATE")
  CONFIG_FILE="$WORK_DIR/join-config.yaml"
  (umask 077 && fetch "$url" "$CONFIG_FILE") || die 4 "config: GET $url failed (is there a join config for $CLUSTER_NAME $VERSION?)"
  # A proxy error page or an empty file would otherwise only fail later inside kubeadm.
  grep -Eq '^kind:[[:space:]]*JoinConfiguration' "$CONFIG_FILE" \
    || die 4 "config: $url is not a kubeadm JoinConfiguration (first line: $(head -c 80 "$CONFIG_FILE" | head -n1))"
  log "join config from $url"
}

join_cluster() {
  if [[ -e $ALREADY_JOINED_FILE ]]; then
    log "$ALREADY_JOINED_FILE exists: this node has already joined; not running kubeadm join"
    return 0
  fi
  # ${a[@]+"${a[@]}"}: an empty array under `set -u` is an error before bash 4.4.
  log "running $KUBEADM join --config <file> ${KUBEADM_EXTRA[*]+${KUBEADM_EXTRA[*]}}"
  "$KUBEADM" join --config "$CONFIG_FILE" ${KUBEADM_EXTRA[@]+"${KUBEADM_EXTRA[@]}"} 2>&1 | tee -a "$LOG_FILE" >&2 \
    || die "$?" "kubeadm join exited with $?"
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until curl -fsS --max-time 5 "$KUBELET_HEALTHZ_URL" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die 5 "the kubelet is not healthy after ${READY_TIMEOUT}s ($KUBELET_HEALTHZ_URL)"
    sleep "$READY_POLL"
  done
  log "kubelet healthy"
}

main() {
  log "deckhand join-node $SCRIPT_VERSION on $NODE (phases: $PHASES_HELP)"
  check_settings
  report discovery started "finding this node's cluster"
  discover
  report discovery ok "cluster $CLUSTER_NAME, Kubernetes $VERSION"
  PHASE="config"
  report config started "downloading the join config"
  download_config
  report config ok "join config for $CLUSTER_NAME $VERSION"
  PHASE="join"
  report join started "kubeadm join"
  join_cluster
  report join ok "kubeadm join succeeded"
  PHASE="ready"
  report ready started "waiting for the kubelet"
  wait_ready
  report ready ok "the kubelet is healthy"
  log "done"
}

main "$@"
