#!/usr/bin/env bash
# Create .venv with the versions this project is verified with (see README). Re-running is fast and a no-op
# once .venv matches pyproject.toml and this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.nerf-edit-setup"
WANT=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "setup: $VENV is up to date"
else
    PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    echo "setup: installing into $VENV (a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first, as its own resolve: on a CUDA machine this is the matching CUDA build.
    "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
    "$VENV/bin/python" -m pip install -q -e ".[dev]" \
        nerfstudio==1.1.5 diffusers==0.42.1 transformers==5.23.0 accelerate==1.15.0 bitsandbytes==0.50.2 \
        ruff==0.17.6 import-linter==2.17 pytest==8.4.2 pytest-xdist==3.8.0 torch==2.14.1 torchvision==0.29.1
    echo "$WANT" > "$STAMP"
fi

# System packages from apt: ffmpeg (ns-render and ns-process-data refuse to run without it), COLMAP 3.8 (ns-process-data
# poses a user's photos with it; Debian's is built without CUDA: pass --no-gpu), Chromium and its driver (the browser
# test of the viewer drives Debian's Chromium through selenium; nothing downloads a browser of its own).
MISSING=()
command -v ffmpeg >/dev/null 2>&1 || MISSING+=(ffmpeg)
command -v colmap >/dev/null 2>&1 || MISSING+=(colmap)
command -v chromium >/dev/null 2>&1 || MISSING+=(chromium)
[ -x /usr/bin/chromedriver ] || MISSING+=(chromium-driver)
if [ ${#MISSING[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${MISSING[*]} with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null
    else
        echo "setup: error: ${MISSING[*]} missing and cannot be installed without root: run 'sudo apt-get install ${MISSING[*]}'" >&2
        exit 1
    fi
fi
