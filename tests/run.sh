#!/usr/bin/env bash
# tests/run.sh — the whole Trunkline test suite, one command: `bash tests/run.sh`
#
# This is the README's test command and the only thing CI (.ci/run) runs. It works from any
# directory, on a fresh Debian 12 machine with only the Rust toolchain installed.
#
# Steps (each gets a banner and a timing; all run even if one fails, then a summary;
# the exit status is non-zero if any step failed):
#   deps     install the system packages the suite needs (SYSTEM_PACKAGES below) with apt,
#            skipping apt entirely when dpkg (`dpkg-query -W`) says all are installed already;
#            uses sudo when not root. Then checks that `sipp -v` runs.
#   fmt      cargo fmt --all -- --check
#   clippy   cargo clippy --workspace --all-targets [--locked] -- -D warnings
#   test     cargo test --workspace --all-targets [--locked]
#            (bench binaries are harness=false and run a tiny smoke when not given --bench)
#   doctest  cargo test --workspace --doc [--locked]
#   fuzz     if tests/fuzz/Cargo.toml exists (a cargo-fuzz project outside the workspace) and
#            a nightly toolchain is available: installs cargo-fuzz if missing, then runs every
#            target in `cargo +nightly fuzz list` for FUZZ_SECONDS seconds each. Prints a SKIP
#            line (and does not fail) when there is no fuzz project, no nightly or no cargo-fuzz.
#   --locked is used when Cargo.lock is committed (`git ls-files Cargo.lock`).
#
# Usage:   bash tests/run.sh [STEP...]      (default: all steps, in the order above)
# Env:     FUZZ_SECONDS   seconds per fuzz target (default 20)
#          FAIL_FAST=1    stop at the first failed step
#          SKIP_DEPS=1    do not touch system packages (e.g. on a non-Debian dev box)
set -euo pipefail

# ---------------------------------------------------------------------------------------
# System packages (Debian names). Add new ones HERE, nowhere else.
# Later issues add: clang libbpf-dev (XDP program).
SYSTEM_PACKAGES=(
    sip-tester       # sipp: drives SIP scenarios
    iproute2         # ip netns / veth topologies
    procps           # pgrep/pkill/ps for process checks
    rtpengine-daemon # the RTP anchor: trunkbench relay runs it side by side
    baresip-core     # a real softphone registering through trunkline up
    util-linux       # taskset (pins the anchor), nsenter (runs inside a test namespace)
    kamailio         # the SIP anchor: trunkbench sip runs it side by side (tm, rr, auth, registrar)
)
# ---------------------------------------------------------------------------------------

ALL_STEPS=(deps fmt clippy test doctest fuzz)
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_DIR=tests/fuzz
SKIP_RC=77 # a step that exits 77 was skipped, not failed

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# cargo may not be on PATH under sudo or in a non-login shell: use rustup's env file.
if ! command -v cargo >/dev/null 2>&1 && [ -f "${CARGO_HOME:-$HOME/.cargo}/env" ]; then
    # shellcheck disable=SC1091
    . "${CARGO_HOME:-$HOME/.cargo}/env"
fi

command -v cargo >/dev/null 2>&1 ||
    { echo "cargo not found: install the Rust toolchain first (https://rustup.rs), then open a new shell" >&2; exit 1; }

LOCKED=()
if git ls-files --error-unmatch Cargo.lock >/dev/null 2>&1; then LOCKED=(--locked); fi

say() { printf '%s\n' "$*"; }
run() { say "+ $*"; "$@"; }

# ------------------------------------------------------------------------------- steps

step_deps() {
    if [ "${SKIP_DEPS:-0}" = 1 ]; then
        say "SKIP deps: SKIP_DEPS=1"
        return $SKIP_RC
    fi
    command -v dpkg-query >/dev/null 2>&1 ||
        { say "no dpkg: this script installs its packages on Debian 12; set SKIP_DEPS=1 and install: ${SYSTEM_PACKAGES[*]}"; return 1; }
    local missing=() p
    for p in "${SYSTEM_PACKAGES[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "all installed: ${SYSTEM_PACKAGES[*]}"
    else
        local sudo=()
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null 2>&1 ||
                { say "need root to apt-get install ${missing[*]}: run as root, install sudo, or install them yourself"; return 1; }
            sudo=(sudo)
        fi
        say "installing: ${missing[*]}"
        run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    # sipp -v prints its version; its exit status is not 0 on every version, so check the text.
    local v
    v="$(sipp -v 2>&1 || true)"
    grep -qi 'sipp' <<<"$v" || { say "sipp -v does not work: $v"; return 1; }
    say "$(grep -im1 'sipp v' <<<"$v" || head -n1 <<<"$v")"
}

step_fmt() { run cargo fmt --all -- --check; }

step_clippy() { run cargo clippy --workspace --all-targets "${LOCKED[@]}" -- -D warnings; }

step_test() { run cargo test --workspace --all-targets "${LOCKED[@]}"; }

step_doctest() { run cargo test --workspace --doc "${LOCKED[@]}"; }

step_fuzz() {
    if [ ! -f "$FUZZ_DIR/Cargo.toml" ]; then
        say "SKIP fuzz: no $FUZZ_DIR/Cargo.toml (no fuzz project yet)"
        return $SKIP_RC
    fi
    # RUSTUP_AUTO_INSTALL=0: a missing nightly is a SKIP, not a download attempt.
    if ! RUSTUP_AUTO_INSTALL=0 cargo +nightly --version >/dev/null 2>&1; then
        say "SKIP fuzz: no nightly toolchain (install it with: rustup toolchain install nightly)"
        return $SKIP_RC
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        say "cargo-fuzz not found: installing it"
        if ! run cargo install cargo-fuzz --locked || ! cargo fuzz --version >/dev/null 2>&1; then
            say "SKIP fuzz: cargo-fuzz could not be installed (cargo install cargo-fuzz --locked failed)"
            return $SKIP_RC
        fi
    fi
    local targets=() t
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$FUZZ_DIR")
    if [ "${#targets[@]}" -eq 0 ]; then
        say "no fuzz targets listed in $FUZZ_DIR: nothing to run"
        return 1
    fi
    say "targets: ${targets[*]} (${FUZZ_SECONDS}s each)"
    for t in "${targets[@]}"; do
        run cargo +nightly fuzz run --fuzz-dir "$FUZZ_DIR" "$t" -- -max_total_time="$FUZZ_SECONDS"
    done
}

# ------------------------------------------------------------------------------- driver

if [ "$#" -gt 0 ]; then STEPS=("$@"); else STEPS=("${ALL_STEPS[@]}"); fi
for s in "${STEPS[@]}"; do
    declare -F "step_$s" >/dev/null || { say "unknown step '$s' (steps: ${ALL_STEPS[*]})"; exit 2; }
done

say "Trunkline test suite — $(git rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout') in $REPO_ROOT"
say "steps: ${STEPS[*]}   CI=${CI:-}   cargo: $(cargo --version 2>/dev/null || echo MISSING)"

RESULTS=()
FAILED=0
T_ALL=$SECONDS
n=0
for s in "${STEPS[@]}"; do
    n=$((n + 1))
    say ""
    say "======== [$n/${#STEPS[@]}] $s  ($(date -u +%H:%M:%S) UTC) ========"
    t0=$SECONDS
    # A subshell with its own `set -e`, outside any `if`/`||` (where bash would ignore -e),
    # so the first failing command ends the step, and the script goes on to the next one.
    set +e
    (set -e; "step_$s")
    rc=$?
    set -e
    dt=$((SECONDS - t0))
    case "$rc" in
        0) status=PASS ;;
        "$SKIP_RC") status=SKIP ;;
        *) status="FAIL (exit $rc)"; FAILED=$((FAILED + 1)) ;;
    esac
    say "-------- $s: $status in ${dt}s"
    RESULTS+=("$(printf '%-8s %-16s %6ss' "$s" "$status" "$dt")")
    if [ "$FAILED" -gt 0 ] && [ "${FAIL_FAST:-0}" = 1 ]; then
        say "FAIL_FAST=1: stopping"
        break
    fi
done

say ""
say "======== summary ($((SECONDS - T_ALL))s) ========"
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" -gt 0 ]; then
    say "FAILED: $FAILED step(s)"
    exit 1
fi
say "OK"
