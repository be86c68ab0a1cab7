# Sourced by scripts/demo and scripts/test: the project's own Python environment.
#
#   donjon_venv NAME EXTRA   makes sure .venv exists and holds Donjon with [EXTRA],
#                            then sets PY to its python and puts its bin/ first on PATH.
#
# Why a virtual environment: on Debian 12, Ubuntu 24.04, Fedora and Homebrew the first
# python3 on PATH is "externally managed" (PEP 668) and pip refuses to install into it.
# An environment that is already active ($VIRTUAL_ENV) is used as it is; DONJON_VENV
# names another directory. The install is skipped when pyproject.toml, the extra and the
# Python are those of the last install (a stamp file in the environment says which).

_say() { echo "$_donjon_name: $*" >&2; }

# The first Python 3.11+ on PATH: PYTHON if set, else python3.13 ... python3.
_donjon_base_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

donjon_venv() {
    _donjon_name=$1
    local extra=$2 venv base log stamp want
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ] && [ -z "${DONJON_VENV:-}" ]; then
        venv=$VIRTUAL_ENV
    else
        venv=${DONJON_VENV:-$PWD/.venv}
    fi

    if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        if ! base=$(_donjon_base_python); then
            _say "error: Donjon needs Python 3.11 or newer, and none is on PATH" \
                "(Debian/Ubuntu: apt install python3; macOS: brew install python)"
            exit 1
        fi
        [ -e "$venv" ] && _say "$venv does not work (its Python moved?): recreating it"
        _say "creating ${venv#"$PWD"/} ($("$base" -c 'import platform; print("Python", platform.python_version())'), $base)"
        rm -rf "$venv"
        if ! log=$("$base" -m venv "$venv" 2>&1); then
            rm -rf "$venv"
            printf '%s\n' "$log" >&2
            _say "error: could not create a virtual environment with $base" \
                "(Debian/Ubuntu: apt install python3-venv; Fedora: dnf install python3)"
            exit 1
        fi
    fi

    PY=$venv/bin/python
    want="extra=$extra python=$("$PY" -c 'import sys; print(sys.version.split()[0])') pyproject=$(
        "$PY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml)"
    stamp=$venv/.donjon-install-$extra
    # [dev] holds everything [build] does: an environment made by scripts/test serves the demo.
    if [ "$extra" = build ] && [ "$(cat "$venv/.donjon-install-dev" 2>/dev/null)" = "${want/extra=build/extra=dev}" ]; then
        stamp=$venv/.donjon-install-dev
        want=${want/extra=build/extra=dev}
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
        "$PY" -c 'import donjon, sys; sys.exit(not donjon.__file__.startswith(sys.argv[1]))' "$PWD/src" 2>/dev/null; then
        :  # up to date: no pip run
    else
        if [ -e "$stamp" ]; then
            _say "pyproject.toml changed: updating Donjon[$extra] in ${venv#"$PWD"/}"
        else
            _say "installing Donjon[$extra] into ${venv#"$PWD"/} (first run, about a minute)"
        fi
        # Quiet unless it fails; then pip's own words.
        if ! log=$(PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet \
                --disable-pip-version-check -e ".[$extra]" 2>&1); then
            printf '%s\n' "$log" >&2
            _say "error: pip install -e .[$extra] into $venv failed (see above)"
            exit 1
        fi
        printf '%s\n' "$want" >"$stamp"
    fi
    export VIRTUAL_ENV=$venv
    export PATH="$venv/bin:$PATH"
}
