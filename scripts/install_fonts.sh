#!/usr/bin/env bash
# Installs the fonts the test document generator needs (a Latin TTF and a CJK TTF) when they are missing.
# Idempotent and quiet: does nothing when both are already present. Needs root (or sudo) for apt-get.
set -euo pipefail

have_font() {
    # $1: fontconfig pattern (e.g. ":lang=zh"), $2...: fallback file paths checked when fc-list is absent
    local pattern="$1"; shift
    if command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list "$pattern" file 2>/dev/null | head -n1)" ]; then
        return 0
    fi
    local f
    for f in "$@"; do
        [ -f "$f" ] && return 0
    done
    return 1
}

packages=()
if ! have_font ":lang=zh" /usr/share/fonts/truetype/wqy/wqy-microhei.ttc; then
    packages+=(fonts-wqy-microhei)
fi
if ! have_font ":family=DejaVu Sans" /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf; then
    packages+=(fonts-dejavu-core)
fi

[ ${#packages[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install_fonts.sh: need root to install ${packages[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Only refresh the package lists when apt has none yet, so repeated runs stay fast and offline-friendly.
if ! apt-cache show "${packages[0]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
fi
# apt/debconf chatter goes to a log that is only shown when the install fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
if command -v fc-cache >/dev/null 2>&1; then
    $SUDO fc-cache -f >/dev/null 2>&1 || true
fi
