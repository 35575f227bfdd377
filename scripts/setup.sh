# Shared by scripts/serve and scripts/test (sourced, not run): find or make the project's
# virtualenv (.venv) and install what is missing, Debian packages included. Safe to run
# again: each step is skipped when its result is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"  # another place: VENV=/path scripts/serve
cd "$ROOT"

say() { printf -- '--- %s\n' "$*" >&2; }

# apt_install PACKAGE... : install the Debian packages that are missing (root, or sudo).
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${missing[*]}, and this is not a Debian system: install them yourself"
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { say "run as root to install ${missing[*]}"; return 1; }
        sudo=(sudo)
    fi
    say "installing ${missing[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    # A package's service (redis-server, nginx) may try to start; the tests never use it.
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# need COMMAND PACKAGE... : install the packages unless COMMAND is already on PATH (the
# machine may have its own node, redis-server, ... from elsewhere than Debian).
need() {
    local command="$1"
    shift
    command -v "$command" >/dev/null 2>&1 || apt_install "$@"
}

# python_ready: a python3 that can make a virtualenv (Debian splits venv out of python3).
python_ready() {
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        local version
        version="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install "python${version}-venv" 2>/dev/null || apt_install python3-venv
    fi
}

# venv_install REQUIREMENTS: the virtualenv with these pinned requirements and this project.
venv_install() {
    local requirements="$1"
    python_ready
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtualenv $VENV"
        # VENV_OPTIONS: e.g. --system-site-packages, to reuse what the machine has.
        # shellcheck disable=SC2086
        python3 -m venv ${VENV_OPTIONS:-} "$VENV"
    fi
    # Reinstall only when a requirements file or the project's metadata changed.
    local stamp="$VENV/.campus-$(basename "$requirements" .txt)"
    local wanted
    wanted="$(cat requirements.txt "$requirements" pyproject.toml | sha256sum | cut -c1-16)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        say "installing $requirements into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
        echo "$wanted" > "$stamp"
    fi
}
