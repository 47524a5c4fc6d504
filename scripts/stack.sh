#!/usr/bin/env bash
# Brings up the local stack that the modal-image tests need, on Debian bookworm as
# root: a Docker daemon, an open registry on 127.0.0.1:5000, a registry with
# htpasswd auth on 127.0.0.1:5001, and the base images busybox:latest and
# debian:bookworm-slim. Services run as plain background processes with pid files,
# because CI machines have no init system.
#
# Usage: bash scripts/stack.sh [up|status|down]
#   up      install missing packages, start what is down, make missing images (default)
#   status  print the state of each part; exit 0 when all are up, 1 otherwise
#   down    stop the registries and the dockerd that this script started
#
# Environment:
#   MODAL_IMAGE_STACK_DIR     state dir (default /var/lib/modal-image-stack)
#   MODAL_IMAGE_STACK_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   MODAL_IMAGE_STACK_PULL=1  try `docker pull` before making a base image locally
#   MODAL_IMAGE_STACK_BUSYBOX_IMAGE, MODAL_IMAGE_STACK_DEBIAN_IMAGE
#                             tags to check and make in place of busybox:latest and
#                             debian:bookworm-slim, to try image creation under a
#                             temporary tag
#
# State dir layout:
#   lock                      flock held by `up` and `down`
#   dockerd.pid, dockerd.log  written when this script starts dockerd
#   registry-open/            config.yml, data/, registry.pid, registry.log
#   registry-auth/            config.yml, htpasswd, data/, registry.pid, registry.log
#   auth-registry.env         test credentials for 127.0.0.1:5001, mode 0600, made once
#   image-busybox.log         output of the last pull or build of the busybox image
#   image-debian.log          output of the last pull or debootstrap of the Debian image
#   tmp/                      build contexts and rootfs dirs, removed after use
set -euo pipefail

STATE_DIR=${MODAL_IMAGE_STACK_DIR:-/var/lib/modal-image-stack}
MIRROR=${MODAL_IMAGE_STACK_MIRROR:-http://deb.debian.org/debian}
BUSYBOX_IMAGE=${MODAL_IMAGE_STACK_BUSYBOX_IMAGE:-busybox:latest}
DEBIAN_IMAGE=${MODAL_IMAGE_STACK_DEBIAN_IMAGE:-debian:bookworm-slim}

OPEN_REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_USER=modal-test
AUTH_ENV_FILE=$STATE_DIR/auth-registry.env
TMP_DIR=$STATE_DIR/tmp

REQUIRED_PACKAGES=(docker.io docker-registry busybox-static debootstrap apache2-utils)
DOCKERD_TIMEOUT_SECONDS=30
REGISTRY_TIMEOUT_SECONDS=10

AUTH_PASSWORD=
TEMP_PATHS=()

log() {
  printf 'stack: %s\n' "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

# Prints the last lines of a log file to stderr, to follow an error about a process.
show_log_tail() {
  if [[ -s $1 ]]; then
    log "last lines of $1:"
    tail -n 20 "$1" >&2
  fi
}

require_root() {
  if ((EUID != 0)); then
    die "$1 needs root; run this script as root"
  fi
}

# Unmounts whatever debootstrap left mounted under a dir, then removes the dir
# without crossing into other filesystems.
remove_tree() {
  local dir=$1 mount_point
  [[ -e $dir ]] || return 0
  while read -r mount_point; do
    umount -l "$mount_point" 2>/dev/null || true
  done < <(awk -v prefix="$dir/" 'index($2, prefix) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$dir"
}

cleanup_temp_paths() {
  local path
  for path in "${TEMP_PATHS[@]}"; do
    remove_tree "$path"
  done
}

# Takes the state dir lock so that two `up` or `down` runs do not start the same
# registry twice. Background services get fd 9 closed, so they never hold it.
take_lock() {
  exec 9>"$STATE_DIR/lock"
  if ! flock -n 9; then
    log "waiting for another stack.sh run to finish (lock: $STATE_DIR/lock)"
    flock -w 900 9 || die "timed out after 900 s waiting for $STATE_DIR/lock"
  fi
}

# Prints the pid in a pid file when that process is alive and runs the expected
# command, so a reused pid never counts as ours.
own_pid() {
  local pid_file=$1 command_name=$2 pid comm
  [[ -s $pid_file ]] || return 1
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$command_name" ]] || return 1
  printf '%s\n' "$pid"
}

# Starts a command in its own session with no inherited terminal or lock, and
# writes its pid to a file. The log file starts empty, so its tail is from this run.
start_background() {
  local pid_file=$1 log_file=$2
  shift 2
  setsid nohup "$@" >"$log_file" 2>&1 </dev/null 9>&- &
  printf '%s\n' "$!" >"$pid_file"
}

# Sends SIGTERM to a process that this script started and waits for it to exit.
stop_own_process() {
  local label=$1 pid_file=$2 command_name=$3 timeout_seconds=$4 pid deadline
  if ! pid=$(own_pid "$pid_file" "$command_name"); then
    rm -f "$pid_file"
    return 0
  fi
  log "stopping $label (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout_seconds))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      die "$label (pid $pid) did not exit within $timeout_seconds s of SIGTERM"
    fi
    sleep 0.1
  done
  rm -f "$pid_file"
}

# --- packages ---------------------------------------------------------------

missing_packages() {
  local -A installed=()
  local name status
  while read -r name status; do
    if [[ $status == installed ]]; then
      installed[$name]=1
    fi
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${REQUIRED_PACKAGES[@]}" 2>/dev/null || true)
  for name in "${REQUIRED_PACKAGES[@]}"; do
    if [[ -z ${installed[$name]:-} ]]; then
      printf '%s\n' "$name"
    fi
  done
  if ! command -v curl >/dev/null; then
    printf 'curl\n'
  fi
}

ensure_packages() {
  local missing
  command -v dpkg-query >/dev/null || die "dpkg-query not found; this script needs Debian bookworm"
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  require_root "installing ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# --- dockerd ----------------------------------------------------------------

docker_up() {
  timeout 10 docker info --format '{{.ServerVersion}}' 2>/dev/null
}

# Removes /var/run/docker.pid when no dockerd runs under that pid, because dockerd
# refuses to start while the pid file names a live process of any kind.
remove_stale_docker_pid_file() {
  local pid_file=/var/run/docker.pid pid comm
  [[ -s $pid_file ]] || return 0
  pid=$(<"$pid_file")
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm=
  if [[ $comm == dockerd ]]; then
    die "dockerd (pid $pid) is running but docker info fails; check its log or restart it"
  fi
  rm -f "$pid_file"
}

# Waits until READY_FUNCTION succeeds for a process started by start_background,
# and dies with the log's tail if the process exits or TIMEOUT seconds pass.
wait_for_start() {
  local pid_file=$1 log_file=$2 timeout=$3 label=$4 probe=$5 ready_function=$6 pid deadline
  pid=$(<"$pid_file")
  deadline=$((SECONDS + timeout))
  until "$ready_function"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$log_file"
      die "$label exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail "$log_file"
      die "timed out after $timeout s waiting for $label to respond to $probe"
    fi
    sleep 0.1
  done
}

dockerd_ready() {
  docker_up >/dev/null
}

ensure_dockerd() {
  local log_file=$STATE_DIR/dockerd.log pid_file=$STATE_DIR/dockerd.pid
  if docker_up >/dev/null; then
    return 0
  fi
  if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != unix:///var/run/docker.sock ]]; then
    die "docker info failed for DOCKER_HOST=$DOCKER_HOST; this script starts dockerd only on the default socket, so unset DOCKER_HOST or start that daemon"
  fi
  require_root "starting dockerd"
  remove_stale_docker_pid_file
  log "starting dockerd (log: $log_file)"
  start_background "$pid_file" "$log_file" dockerd
  wait_for_start "$pid_file" "$log_file" "$DOCKERD_TIMEOUT_SECONDS" dockerd "docker info" dockerd_ready
  log "dockerd is up (pid $(<"$pid_file"))"
}

# --- registries -------------------------------------------------------------

# Prints the HTTP status of GET http://ADDRESS/v2/ (000 when nothing responds),
# followed by " registry" when the response carries the distribution API header.
# With --auth it sends the test credentials through curl's stdin config, so the
# password never appears in a process list.
probe_registry() {
  local address=$1 mode=${2:-} headers status=000
  local args=(-sS -o /dev/null -D - --max-time 2 "http://$address/v2/")
  if [[ $mode == --auth ]]; then
    headers=$(printf 'user = "%s:%s"\n' "$AUTH_USER" "$AUTH_PASSWORD" | curl -K - "${args[@]}" 2>/dev/null) || true
  else
    headers=$(curl "${args[@]}" 2>/dev/null) || true
  fi
  if [[ $headers =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]]; then
    status=${BASH_REMATCH[1]}
  fi
  if [[ ${headers,,} == *"docker-distribution-api-version: registry/2.0"* ]]; then
    status+=" registry"
  fi
  printf '%s\n' "$status"
}

# Prints the open registry's state: up, down or foreign (a server on the port that
# is not a registry).
open_registry_state() {
  case $(probe_registry "$OPEN_REGISTRY") in
    "200 registry") echo up ;;
    000) echo down ;;
    *) echo foreign ;;
  esac
}

# Prints the auth registry's state: up, down, rejected (a registry that rejects the
# test credentials) or foreign (a server on the port that is not a registry with auth).
auth_registry_state() {
  local anonymous
  anonymous=$(probe_registry "$AUTH_REGISTRY")
  case $anonymous in
    000)
      echo down
      return 0
      ;;
    "401 registry") ;;
    *)
      echo foreign
      return 0
      ;;
  esac
  if [[ -z $AUTH_PASSWORD ]]; then
    echo rejected
  elif [[ $(probe_registry "$AUTH_REGISTRY" --auth) == "200 registry" ]]; then
    echo up
  else
    echo rejected
  fi
}

# Reads the test credentials from the env file, or generates them on the first run.
# The password is 32 hex digits, so it needs no quoting in the file or in curl.
ensure_auth_credentials() {
  local value
  if [[ ! -s $AUTH_ENV_FILE ]]; then
    value=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (
      umask 077
      printf 'MODAL_IMAGE_TEST_AUTH_REGISTRY=%s\nMODAL_IMAGE_TEST_AUTH_USER=%s\nMODAL_IMAGE_TEST_AUTH_PASSWORD=%s\n' \
        "$AUTH_REGISTRY" "$AUTH_USER" "$value" >"$AUTH_ENV_FILE.tmp"
    )
    mv "$AUTH_ENV_FILE.tmp" "$AUTH_ENV_FILE"
    log "generated test credentials in $AUTH_ENV_FILE"
  fi
  chmod 0600 "$AUTH_ENV_FILE"
  load_auth_credentials
  [[ -n $AUTH_PASSWORD ]] || die "MODAL_IMAGE_TEST_AUTH_PASSWORD missing in $AUTH_ENV_FILE; delete the file and run up again"
}

load_auth_credentials() {
  local key value
  [[ -r $AUTH_ENV_FILE ]] || return 0
  while IFS='=' read -r key value; do
    case $key in
      MODAL_IMAGE_TEST_AUTH_USER) AUTH_USER=$value ;;
      MODAL_IMAGE_TEST_AUTH_PASSWORD) AUTH_PASSWORD=$value ;;
    esac
  done <"$AUTH_ENV_FILE"
}

write_registry_config() {
  local dir=$1 address=$2 htpasswd_file=${3:-}
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $address
EOF
  if [[ -n $htpasswd_file ]]; then
    cat >>"$dir/config.yml" <<EOF
auth:
  htpasswd:
    realm: modal-image-test
    path: $htpasswd_file
EOF
  fi
}

open_registry_ready() {
  [[ $(open_registry_state) == up ]]
}

auth_registry_ready() {
  [[ $(auth_registry_state) == up ]]
}

# Starts docker-registry with the config in DIR and waits until READY_FUNCTION
# succeeds.
start_registry() {
  local label=$1 dir=$2 ready_function=$3
  log "starting $label (log: $dir/registry.log)"
  start_background "$dir/registry.pid" "$dir/registry.log" docker-registry serve "$dir/config.yml"
  wait_for_start "$dir/registry.pid" "$dir/registry.log" "$REGISTRY_TIMEOUT_SECONDS" \
    "$label" "/v2/" "$ready_function"
}

ensure_open_registry() {
  local dir=$STATE_DIR/registry-open label="registry on $OPEN_REGISTRY"
  case $(open_registry_state) in
    up) return 0 ;;
    foreign) die "GET http://$OPEN_REGISTRY/v2/ returned no 200 with a registry/2.0 API header, so the server on that port is not a registry; stop it" ;;
  esac
  # A registry that this script started and that runs but does not respond is restarted.
  stop_own_process "$label" "$dir/registry.pid" docker-registry 10
  mkdir -p "$dir/data"
  write_registry_config "$dir" "$OPEN_REGISTRY"
  start_registry "$label" "$dir" open_registry_ready
}

ensure_auth_registry() {
  local dir=$STATE_DIR/registry-auth label="registry on $AUTH_REGISTRY"
  mkdir -p "$dir/data"
  if [[ ! -s $dir/htpasswd || $AUTH_ENV_FILE -nt $dir/htpasswd ]]; then
    (
      umask 077
      printf '%s\n' "$AUTH_PASSWORD" | htpasswd -Bin "$AUTH_USER" >"$dir/htpasswd.tmp" 2>/dev/null
    ) || die "htpasswd failed to hash the test password"
    mv "$dir/htpasswd.tmp" "$dir/htpasswd"
  fi
  case $(auth_registry_state) in
    up) return 0 ;;
    foreign) die "GET http://$AUTH_REGISTRY/v2/ returned no 401 with a registry/2.0 API header, so the server on that port is not a registry with auth; stop it" ;;
    rejected)
      # docker-registry 2.8.2 reloads a changed htpasswd file by itself, so a restart
      # is only a fallback. A registry that this script did not start is left alone.
      if ! own_pid "$dir/registry.pid" docker-registry >/dev/null; then
        die "$AUTH_REGISTRY rejects the credentials in $AUTH_ENV_FILE and was not started by this script; stop it"
      fi
      ;;
  esac
  stop_own_process "$label" "$dir/registry.pid" docker-registry 10
  write_registry_config "$dir" "$AUTH_REGISTRY" "$dir/htpasswd"
  start_registry "$label" "$dir" auth_registry_ready
}

# --- images -----------------------------------------------------------------

image_exists() {
  docker image inspect "$1" >/dev/null 2>&1
}

# Runs `docker pull` when MODAL_IMAGE_STACK_PULL=1. Off by default, because the
# tests send no traffic off the machine unless asked.
try_pull() {
  local tag=$1 log_file=$2
  [[ ${MODAL_IMAGE_STACK_PULL:-} == 1 ]] || return 1
  log "pulling $tag"
  if docker pull "$tag" >>"$log_file" 2>&1; then
    return 0
  fi
  log "docker pull $tag failed, making it locally (log: $log_file)"
  return 1
}

new_temp_dir() {
  mkdir -p "$TMP_DIR"
  mktemp -d "$TMP_DIR/$1.XXXXXX"
}

# Builds a FROM scratch image holding Debian's static busybox with its applet
# links in /bin.
make_busybox_image() {
  local tag=$1 log_file=$2 context
  context=$(new_temp_dir busybox)
  TEMP_PATHS+=("$context")
  cp /bin/busybox "$context/busybox"
  cat >"$context/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
EOF
  log "building $tag from /bin/busybox (log: $log_file)"
  if ! docker build -t "$tag" "$context" >>"$log_file" 2>&1; then
    show_log_tail "$log_file"
    die "docker build of $tag failed"
  fi
  remove_tree "$context"
}

# Makes a minimal Debian bookworm image with debootstrap, without the downloaded
# .deb files and package lists, as in Docker's debian:bookworm-slim.
make_debian_image() {
  local tag=$1 log_file=$2 rootfs
  rootfs=$(new_temp_dir rootfs)
  TEMP_PATHS+=("$rootfs")
  log "running debootstrap for bookworm from $MIRROR, about 30 s on a 2-core machine (log: $log_file)"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >>"$log_file" 2>&1; then
    show_log_tail "$log_file"
    die "debootstrap from $MIRROR failed; set MODAL_IMAGE_STACK_MIRROR to a reachable Debian mirror"
  fi
  rm -f "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
  rm -rf "$rootfs"/var/lib/apt/lists/*
  log "importing $tag"
  if ! tar --numeric-owner -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$tag" >>"$log_file" 2>&1; then
    show_log_tail "$log_file"
    die "docker import of $tag failed"
  fi
  remove_tree "$rootfs"
}

ensure_images() {
  local log_file
  if ! image_exists "$BUSYBOX_IMAGE"; then
    log_file=$STATE_DIR/image-busybox.log
    : >"$log_file"
    try_pull "$BUSYBOX_IMAGE" "$log_file" || make_busybox_image "$BUSYBOX_IMAGE" "$log_file"
    log "made image $BUSYBOX_IMAGE"
  fi
  if ! image_exists "$DEBIAN_IMAGE"; then
    log_file=$STATE_DIR/image-debian.log
    : >"$log_file"
    try_pull "$DEBIAN_IMAGE" "$log_file" || make_debian_image "$DEBIAN_IMAGE" "$log_file"
    log "made image $DEBIAN_IMAGE"
  fi
}

# --- subcommands ------------------------------------------------------------

command_up() {
  local started=${EPOCHREALTIME/./} elapsed
  ensure_packages
  mkdir -p "$STATE_DIR"
  take_lock
  trap cleanup_temp_paths EXIT
  # Removes what a run killed before its cleanup left in tmp/. The lock makes sure
  # that no other run is using it.
  remove_tree "$TMP_DIR"
  ensure_dockerd
  ensure_open_registry
  ensure_auth_credentials
  ensure_auth_registry
  ensure_images
  elapsed=$(((${EPOCHREALTIME/./} - started) / 10000))
  log "stack is up ($((elapsed / 100)).$(printf '%02d' $((elapsed % 100))) s)"
}

# Prints who started a running service: this script (with the pid) or another process.
owner_note() {
  local pid
  if pid=$(own_pid "$1" "$2"); then
    printf 'started by stack.sh, pid %s' "$pid"
  else
    printf 'not started by stack.sh'
  fi
}

print_state() {
  printf '%-34s %s\n' "$1" "$2"
}

command_status() {
  local ok=0 missing version state image

  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    print_state packages installed
  else
    print_state packages "missing: ${missing[*]}"
    ok=1
  fi

  if version=$(docker_up); then
    print_state dockerd "up, version $version, $(owner_note "$STATE_DIR/dockerd.pid" dockerd)"
  else
    print_state dockerd down
    ok=1
  fi

  state=$(open_registry_state)
  case $state in
    up) state="up, $(owner_note "$STATE_DIR/registry-open/registry.pid" docker-registry)" ;;
    foreign) state="port in use by a server that is not a registry" ;;
  esac
  [[ $state == up,* ]] || ok=1
  print_state "registry $OPEN_REGISTRY" "$state"

  load_auth_credentials
  state=$(auth_registry_state)
  case $state in
    up) state="up, user $AUTH_USER, $(owner_note "$STATE_DIR/registry-auth/registry.pid" docker-registry)" ;;
    rejected) state="a registry that rejects the test credentials" ;;
    foreign) state="port in use by a server that is not a registry with auth" ;;
  esac
  [[ $state == up,* ]] || ok=1
  if [[ ! -r $AUTH_ENV_FILE ]]; then
    state+=", credentials file $AUTH_ENV_FILE missing"
  fi
  print_state "registry $AUTH_REGISTRY" "$state"

  for image in "$BUSYBOX_IMAGE" "$DEBIAN_IMAGE"; do
    if image_exists "$image"; then
      print_state "image $image" present
    else
      print_state "image $image" missing
      ok=1
    fi
  done
  return "$ok"
}

command_down() {
  mkdir -p "$STATE_DIR"
  take_lock
  stop_own_process "registry on $AUTH_REGISTRY" "$STATE_DIR/registry-auth/registry.pid" docker-registry 10
  stop_own_process "registry on $OPEN_REGISTRY" "$STATE_DIR/registry-open/registry.pid" docker-registry 10
  if own_pid "$STATE_DIR/dockerd.pid" dockerd >/dev/null; then
    # dockerd 20.10 stops running containers first and waits up to its --shutdown-timeout
    # (15 s by default) for them.
    stop_own_process dockerd "$STATE_DIR/dockerd.pid" dockerd 60
  else
    rm -f "$STATE_DIR/dockerd.pid"
  fi
  log "stopped what stack.sh started; other processes were left running"
}

main() {
  case ${1:-up} in
    up) command_up ;;
    status) command_status ;;
    down) command_down ;;
    -h | --help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" ;;
    *) die "unknown subcommand '$1'; use up, status or down" ;;
  esac
}

main "$@"
