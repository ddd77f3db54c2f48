#!/usr/bin/env bash
# tests/newcomer.sh — prove the two commands at the top of README.md work for a newcomer.
#
# "A newcomer" = a fresh Debian 12 (bookworm) machine with only the Rust toolchain
# installed (rustup + the stable toolchain, as https://rustup.rs leaves it) and a git clone.
#
# Usage:  sudo bash tests/newcomer.sh [REPO]        (REPO: path to clone; default: this repo)
#
# Steps:
#   1. bootstrap  mmdebstrap a minimal bookworm root (variant minbase + ca-certificates, git,
#                 gcc, libc6-dev, pkg-config, make) into $NEWCOMER_ROOT, reusing it when a
#                 previous run left the marker file. The mirror is taken from the host's apt
#                 sources (this network only reaches the Debian mirrors and the registries).
#   2. rust       copy the host's rustup install into the root's /root, offline: rustup's
#                 proxies and the default (stable) toolchain only — no nightly, no cargo-installed
#                 tools, no registry cache — and add `. "$HOME/.cargo/env"` to .profile as the
#                 rustup installer does.
#   3. mounts     /proc, /sys, /dev (with /dev/pts, /dev/shm); a trap unmounts them on any exit.
#                 Also copies the host's resolv.conf and any locally added CA certificates
#                 (/usr/local/share/ca-certificates: a TLS-inspecting proxy's, on our VMs).
#   4. clone      `git clone` REPO (its checked-out branch, or $NEWCOMER_REF) into /root/trunkline.
#   5. readme     read the two commands from README.md's first fenced block (run, then test),
#                 and check that .ci/run calls that same test command.
#   6. test       run the README test command inside the root (it installs its own apt packages).
#   7. up         run the README run command inside the root, in a private network namespace
#                 (so port 5060 cannot clash with anything on the host), with a timeout; wait
#                 for its ready line, then send one SIP OPTIONS to 127.0.0.1:5060 with sipp
#                 and expect a 200 (skipped, with a SKIP line, if sipp is not in the root).
#
# Environment:
#   NEWCOMER_ROOT          chroot directory                      (/var/tmp/trunkline-newcomer)
#   NEWCOMER_REF           branch/commit to check out            (REPO's checked-out HEAD)
#   NEWCOMER_STEPS         space-separated subset of: bootstrap rust clone test up
#                          ("bootstrap rust" alone prepares the root; "smoke" = cargo --version
#                          and cargo build in the clone, for before the code exists)
#                                                                (bootstrap rust clone test up)
#   NEWCOMER_REBUILD=1     throw the root away and bootstrap again
#   NEWCOMER_READY_REGEX   extended regex for the run command's ready line        (^ready$)
#   NEWCOMER_UP_TIMEOUT    seconds to wait for the ready line, build included     (2400)
#   NEWCOMER_MIRROR        override the Debian mirror URL
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
REPO="${1:-$REPO_ROOT}"
ROOT="${NEWCOMER_ROOT:-/var/tmp/trunkline-newcomer}"
STEPS="${NEWCOMER_STEPS:-bootstrap rust clone test up}"
READY_REGEX="${NEWCOMER_READY_REGEX:-^ready$}"
UP_TIMEOUT="${NEWCOMER_UP_TIMEOUT:-2400}"
MARKER="$ROOT/.trunkline-newcomer-ready"
SUITE=bookworm
PACKAGES="ca-certificates,git,gcc,libc6-dev,pkg-config,make"
CLONE_IN_ROOT=/root/trunkline
NETNS="trunkline-newcomer-$$"
UP_PID=""

log()  { printf '\n==> [newcomer] %s\n' "$*"; }
die()  { printf '\nFAIL [newcomer] %s\n' "$*" >&2; exit 1; }
want() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "must run as root (mmdebstrap, chroot, mount) and sudo is not available"
    exec sudo -E bash "$0" "$@"
fi

# ---------------------------------------------------------------- cleanup on any exit
mounted=()
cleanup() {
    local rc=$?
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        sleep 2
        kill -KILL "$UP_PID" 2>/dev/null || true
    fi
    # Anything still running inside the root (e.g. the appliance started by the run command)
    # would keep the mounts busy: end exactly those processes.
    if [ -d "$ROOT" ]; then
        local p
        for p in /proc/[0-9]*; do
            if [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOT" ]; then
                kill -KILL "${p#/proc/}" 2>/dev/null || true
            fi
        done
    fi
    ip netns del "$NETNS" 2>/dev/null || true
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -R "${mounted[$i]}" 2>/dev/null || umount -R -l "${mounted[$i]}" 2>/dev/null ||
            echo "WARN [newcomer] could not unmount ${mounted[$i]}" >&2
    done
    # Mounts the suite made inside the root (e.g. /run/netns by `ip netns add` in a test),
    # deepest first.
    local m
    while read -r m; do
        [ -n "$m" ] || continue
        umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null ||
            echo "WARN [newcomer] could not unmount $m" >&2
    done < <(mounts_under_root | sort -r)
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mounts_under_root() { findmnt -rn -o TARGET | awk -v r="$ROOT" 'index($0, r "/") == 1' || true; }

# ---------------------------------------------------------------- 1. bootstrap
# Debian mirror lines for $SUITE taken from the host's apt sources (deb822 and one-line).
host_mirror_lines() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && uris != "" && enabled != "no") {
                    n = split(suites, s, " "); split(uris, u, " ")
                    for (i = 1; i <= n; i++) if (s[i] ~ "^" suite) print "deb " u[1] " " s[i] " " comps
                }
                types = uris = suites = comps = enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ /, "")
              if (key == "types") types = $0; else if (key == "uris") uris = $0
              else if (key == "suites") suites = $0; else if (key == "components") comps = $0
              else if (key == "enabled") enabled = tolower($0) }
            END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # drop [options] (arch=, signed-by=): mmdebstrap takes the host's keyrings anyway
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 ~ "^" suite { $1 = $1; print }'
    done
}

bootstrap() {
    if [ -e "$MARKER" ] && [ "${NEWCOMER_REBUILD:-0}" != 1 ]; then
        log "bootstrap: reusing $ROOT ($(cat "$MARKER"))"
        return
    fi
    [ -z "$(mounts_under_root)" ] || die "something is still mounted under $ROOT: $(mounts_under_root | tr '\n' ' ')"
    if [ -e "$ROOT" ]; then
        log "bootstrap: removing incomplete/old root $ROOT"
        rm -rf --one-file-system "$ROOT"
    fi
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        log "bootstrap: installing mmdebstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap
    fi
    local -a mirrors=()
    if [ -n "${NEWCOMER_MIRROR:-}" ]; then
        mirrors=("deb $NEWCOMER_MIRROR $SUITE main")
    else
        mapfile -t mirrors < <(host_mirror_lines | awk '!seen[$0]++')
        [ "${#mirrors[@]}" -gt 0 ] || mirrors=("deb http://deb.debian.org/debian $SUITE main")
    fi
    log "bootstrap: mmdebstrap $SUITE (minbase + $PACKAGES) into $ROOT"
    printf '    mirror: %s\n' "${mirrors[@]}"
    local t0=$SECONDS
    mmdebstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "${mirrors[@]}"
    echo "bootstrapped $(date -u +%FT%TZ) in $((SECONDS - t0))s" >"$MARKER"
    log "bootstrap: done in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- 2. rust (offline copy)
install_rust() {
    local rh=/root/.rustup ch=/root/.cargo
    [ -x "$ch/bin/rustup" ] || die "host has no rustup at $ch/bin/rustup to copy"
    local tc
    tc="$(RUSTUP_HOME=$rh "$ch/bin/rustup" default 2>/dev/null | awk '{print $1; exit}')"
    [ -n "$tc" ] && [ -d "$rh/toolchains/$tc" ] || die "cannot find the host's default toolchain ($tc)"
    if [ -x "$ROOT/root/.rustup/toolchains/$tc/bin/cargo" ] && [ -x "$ROOT/root/.cargo/bin/rustup" ]; then
        log "rust: $tc already in the root"
    else
        log "rust: copying rustup + $tc into the root (offline)"
        rm -rf --one-file-system "$ROOT/root/.rustup" "$ROOT/root/.cargo"
        mkdir -p "$ROOT/root/.rustup/toolchains" "$ROOT/root/.cargo/bin"
        cp -a "$rh/settings.toml" "$ROOT/root/.rustup/"
        [ -d "$rh/update-hashes" ] && cp -a "$rh/update-hashes" "$ROOT/root/.rustup/"
        cp -a "$rh/toolchains/$tc" "$ROOT/root/.rustup/toolchains/"
        cp -a "$ch/env" "$ROOT/root/.cargo/"
        cp -a "$ch/bin/rustup" "$ROOT/root/.cargo/bin/"
        # rustup's proxies are symlinks to rustup; cargo-installed tools are not copied.
        local f
        for f in "$ch"/bin/*; do
            if [ -L "$f" ] && [ "$(readlink "$f")" = rustup ]; then cp -a "$f" "$ROOT/root/.cargo/bin/"; fi
        done
        # settings.toml must name a toolchain we copied.
        sed -i "s/^default_toolchain = .*/default_toolchain = \"$tc\"/" "$ROOT/root/.rustup/settings.toml"
    fi
    local rc
    for rc in .profile .bashrc; do
        grep -qs 'cargo/env' "$ROOT/root/$rc" || printf '. "$HOME/.cargo/env"\n' >>"$ROOT/root/$rc"
    done
}

# ---------------------------------------------------------------- 3. mounts
mount_all() {
    [ -z "$(mounts_under_root)" ] || die "already mounted under $ROOT (another newcomer run?): $(mounts_under_root | tr '\n' ' ')"
    mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
    mount --rbind /sys "$ROOT/sys" && mounted+=("$ROOT/sys") && mount --make-rslave "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev" && mounted+=("$ROOT/dev") && mount --make-rslave "$ROOT/dev"
    # /etc/resolv.conf may be a symlink in the root; replace it with the host's content.
    rm -f "$ROOT/etc/resolv.conf"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # Not a project requirement, a property of where this runs: when the host trusts extra
    # local CAs (e.g. a TLS-inspecting egress proxy in front of crates.io), the root must too.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
        chroot "$ROOT" update-ca-certificates >/dev/null
    fi
}

# Run a command line inside the root as root's login shell (so ~/.profile puts cargo on PATH).
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
        TERM="${TERM:-dumb}" LANG=C.UTF-8 CI="${CI:-}" ${FUZZ_SECONDS:+FUZZ_SECONDS="$FUZZ_SECONDS"} \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -lc "$1"
}

# ---------------------------------------------------------------- 4. clone
clone() {
    log "clone: $REPO${NEWCOMER_REF:+ @ $NEWCOMER_REF} -> $ROOT$CLONE_IN_ROOT"
    rm -rf --one-file-system "$ROOT$CLONE_IN_ROOT"
    git clone -q --no-hardlinks "$REPO" "$ROOT$CLONE_IN_ROOT"
    if [ -n "${NEWCOMER_REF:-}" ]; then git -C "$ROOT$CLONE_IN_ROOT" checkout -q "$NEWCOMER_REF"; fi
    git -C "$ROOT$CLONE_IN_ROOT" log --oneline -1
}

# ---------------------------------------------------------------- 5. README commands
RUN_CMD="" TEST_CMD=""
read_readme() {
    local readme="$ROOT$CLONE_IN_ROOT/README.md"
    [ -f "$readme" ] || die "no README.md in the clone"
    local -a cmds=()
    mapfile -t cmds < <(awk '/^```/ { if (inblock) exit; inblock = 1; next }
                             inblock && !/^[ \t]*(#|$)/ { sub(/[ \t]+#.*$/, ""); print }' "$readme")
    [ "${#cmds[@]}" -eq 2 ] || die "README.md's first code block must hold exactly 2 commands (run, test); found ${#cmds[@]}"
    RUN_CMD="${cmds[0]}" TEST_CMD="${cmds[1]}"
    printf '    run:  %s\n    test: %s\n' "$RUN_CMD" "$TEST_CMD"
    grep -qF -- "exec $TEST_CMD" "$ROOT$CLONE_IN_ROOT/.ci/run" ||
        die ".ci/run does not call the README's test command ($TEST_CMD)"
}

# ---------------------------------------------------------------- 6. test
run_test() {
    log "test: $TEST_CMD"
    local t0=$SECONDS
    in_root "cd $CLONE_IN_ROOT && $TEST_CMD" || die "README test command failed after $((SECONDS - t0))s"
    log "test: passed in $((SECONDS - t0))s"
}

smoke() {
    log "smoke: cargo --version and cargo build in the clone"
    local t0=$SECONDS
    in_root "cd $CLONE_IN_ROOT && cargo --version && rustc --version && cargo build --workspace --locked" ||
        die "cargo smoke failed"
    log "smoke: passed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- 7. up
OPTIONS_XML='<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="newcomer OPTIONS">
  <send retrans="500">
    <![CDATA[
OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:newcomer@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Contact: <sip:newcomer@[local_ip]:[local_port]>
Accept: application/sdp
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>'

run_up() {
    log "up: $RUN_CMD (private netns, ready regex /$READY_REGEX/, timeout ${UP_TIMEOUT}s)"
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    local logf="$ROOT/tmp/newcomer-up.log"
    : >"$logf"
    # The test step fetched every crate; offline here keeps a missing one from hanging on DNS.
    ip netns exec "$NETNS" timeout --kill-after=10 "$UP_TIMEOUT" \
        chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CARGO_NET_OFFLINE=true \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -lc "cd $CLONE_IN_ROOT && exec $RUN_CMD" >"$logf" 2>&1 &
    UP_PID=$!
    local t0=$SECONDS
    until grep -Eqi -- "$READY_REGEX" "$logf"; do
        if ! kill -0 "$UP_PID" 2>/dev/null; then
            tail -n 40 "$logf" >&2
            die "run command exited before printing a line matching /$READY_REGEX/"
        fi
        [ $((SECONDS - t0)) -lt "$UP_TIMEOUT" ] || die "no ready line within ${UP_TIMEOUT}s"
        sleep 2
    done
    log "up: ready after $((SECONDS - t0))s: $(grep -Eim1 -- "$READY_REGEX" "$logf")"
    if in_root 'command -v sipp' >/dev/null 2>&1; then
        printf '%s\n' "$OPTIONS_XML" >"$ROOT/tmp/newcomer-options.xml"
        ip netns exec "$NETNS" chroot "$ROOT" sipp -sf /tmp/newcomer-options.xml -i 127.0.0.1 -p 5099 \
            -m 1 -timeout 15s -timeout_error 127.0.0.1:5060 </dev/null >"$ROOT/tmp/newcomer-sipp.log" 2>&1 ||
            { tail -n 40 "$logf" >&2; die "no 200 to SIP OPTIONS on 127.0.0.1:5060 (see $ROOT/tmp/newcomer-sipp.log)"; }
        log "up: 200 OK to SIP OPTIONS on 127.0.0.1:5060"
    else
        echo "SKIP [newcomer] SIP OPTIONS check: sipp is not installed in the root"
    fi
}

# ---------------------------------------------------------------- main
T_START=$SECONDS
want bootstrap && bootstrap
[ -e "$MARKER" ] || die "$ROOT is not bootstrapped (run with the bootstrap step)"
want rust && install_rust
if want clone || want smoke || want test || want up; then
    mount_all
    want clone && clone
    want smoke && smoke
    if want test || want up; then read_readme; fi
    want test && run_test
    want up && run_up
fi
log "all requested steps passed ($STEPS) in $((SECONDS - T_START))s"
