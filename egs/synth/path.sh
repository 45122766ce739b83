# shellcheck shell=bash
# Environment of the synth recipe; sourced by run.sh and local/*.sh (run them from this directory).
#
# VOXAR_ROOT is the voxar checkout: taken from the environment when set (e.g. for a copy of this recipe placed
# elsewhere), else two levels up from this file when that holds the voxar package. Its .venv/bin (when present) goes
# first on PATH and the checkout on PYTHONPATH, so `python -m voxar...` runs this tree's code. Without a checkout,
# an installed voxar (pip install voxar) is used as is.
if [ -z "${VOXAR_ROOT:-}" ]; then
  _here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if [ -f "${_here}/../../voxar/__init__.py" ]; then
    VOXAR_ROOT="$(cd "${_here}/../.." && pwd)"
  fi
  unset _here
fi
if [ -n "${VOXAR_ROOT:-}" ]; then
  export VOXAR_ROOT
  if [ -d "${VOXAR_ROOT}/.venv/bin" ]; then
    export PATH="${VOXAR_ROOT}/.venv/bin:${PATH}"
  fi
  export PYTHONPATH="${VOXAR_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
fi
export LC_ALL=C  # Kaldi-style byte-order sorting
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
