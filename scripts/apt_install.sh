# Sourced by the install scripts. `apt_install WHO PACKAGE...` installs Debian packages quietly, as root or through
# `sudo -n` (APT_SUDO is left set for later commands), refreshing the package lists only when apt has none for the
# first package, so repeated runs stay fast and offline-friendly. Returns 1, saying why on stderr, when it cannot.
apt_install() {
    local who="$1"; shift
    APT_SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            APT_SUDO="sudo -n"
        else
            echo "$who: need root to install $*" >&2
            return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "$1" >/dev/null 2>&1; then
        $APT_SUDO apt-get update -qq >/dev/null 2>&1 || true
    fi
    # apt/debconf chatter goes to a log that is only shown when the install fails.
    local log status=0
    log="$(mktemp)"
    $APT_SUDO apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1 || status=1
    [ "$status" -eq 0 ] || cat "$log" >&2
    rm -f "$log"
    return "$status"
}
