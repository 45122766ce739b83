# shellcheck shell=bash
# Command-line options for recipe scripts, in the Kaldi/ESPnet grammar. Source it after setting the defaults:
#
#   stage=1
#   nj=2
#   use_gpu=false
#   usage="Usage: $0 [options]"      # or help_message=...
#   . utils/parse_options.sh
#
# Then `--name value` (or `--name=value`) sets the shell variable `name`; dashes in the name become underscores
# (`--stop-stage 3` sets stop_stage). Only variables that already exist can be set: an unknown option is an error.
# A variable whose default is true/false only accepts true/false. `--config FILE` sources FILE (lines like
# `nj=4`) at that point of the argument list. `--help`/`-h` prints $usage (or $help_message) and exits 0.
# Parsing stops at the first argument that does not start with `--` (or after `--`); the remaining arguments
# are left in "$@" for the script.

_po_die() {
  echo "$0: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help | -h)
      _po_text="${usage:-${help_message:-}}"
      if [ -z "$_po_text" ]; then _po_text="Usage: $0 [options]  (no usage text defined)"; fi
      printf '%s\n' "$_po_text"
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --config | --config=*)
      if [ "$1" = "--config" ]; then
        [ $# -ge 2 ] || _po_die "option --config needs a file"
        _po_cfg="$2"
        shift 2
      else
        _po_cfg="${1#--config=}"
        shift
      fi
      [ -f "$_po_cfg" ] || _po_die "config file $_po_cfg not found"
      # shellcheck disable=SC1090
      . "$_po_cfg"
      ;;
    --*=*)
      _po_name="${1%%=*}"
      _po_value="${1#*=}"
      _po_name="${_po_name#--}"
      shift
      set -- "--$_po_name" "$_po_value" "$@"
      ;;
    --?*)
      _po_name="${1#--}"
      _po_name="${_po_name//-/_}"
      case "$_po_name" in
        [!a-zA-Z_]* | *[!a-zA-Z0-9_]*) _po_die "invalid option $1 (not a valid variable name)" ;;
      esac
      if [ -z "${!_po_name+set}" ]; then
        _po_die "invalid option $1 (no variable $_po_name is defined in this script)"
      fi
      [ $# -ge 2 ] || _po_die "option $1 needs a value"
      _po_old="${!_po_name}"
      if [ "$_po_old" = "true" ] || [ "$_po_old" = "false" ]; then
        case "$2" in
          true | false) ;;
          *) _po_die "option $1 takes true or false, got '$2'" ;;
        esac
      fi
      printf -v "$_po_name" '%s' "$2"
      shift 2
      ;;
    *)
      break
      ;;
  esac
done

unset -f _po_die
unset _po_name _po_value _po_old _po_cfg _po_text
true
