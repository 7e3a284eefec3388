# Sourced by scripts/demo and scripts/test: `setup` creates .venv when it is missing (Python
# 3.11 or newer, `python3` or the one PYTHON names) and installs the project with its test
# extras, again only when pyproject.toml changed since the last install.

setup() {
    local python=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "error: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2
            exit 1
        fi
        "$python" -m venv .venv
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp=.venv/.espace-sante-installed
    local wanted
    wanted=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
        echo "$wanted" > "$stamp"
    fi
}
