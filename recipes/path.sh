# shellcheck shell=bash
# Environment of a voxar recipe; sourced by run.sh, tts.sh, vc.sh and local/*.sh, run from the recipe directory.
# Recipes link to this file (egs/<corpus>/path.sh -> ../../recipes/path.sh).
#
# VOXAR_ROOT is the voxar checkout: taken from the environment when set (e.g. for a copy of a recipe placed
# elsewhere), else found above this file (a recipe two levels down, or recipes/ itself) when that holds the voxar
# package. Its .venv/bin (when present) goes first on PATH and the checkout on PYTHONPATH, so `python -m voxar...`
# runs this tree's code. Without a checkout, an installed voxar (pip install voxar) is used as is.
if [ -z "${VOXAR_ROOT:-}" ]; then
  _here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  for _up in "${_here}/../.." "${_here}/.."; do
    if [ -f "${_up}/voxar/__init__.py" ]; then
      VOXAR_ROOT="$(cd "${_up}" && pwd)"
      break
    fi
  done
  unset _here _up
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
