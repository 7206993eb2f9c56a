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

# shellcheck source=apt_install.sh
source "$(dirname "$0")/apt_install.sh"
apt_install install_fonts.sh "${packages[@]}" || exit 1
if command -v fc-cache >/dev/null 2>&1; then
    $APT_SUDO fc-cache -f >/dev/null 2>&1 || true
fi
