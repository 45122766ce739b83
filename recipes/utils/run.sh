#!/usr/bin/env bash
# Local job runner with the interface of Kaldi's run.pl (the `${train_cmd}`/`${cuda_cmd}`/`${decode_cmd}` of
# cmd.sh), for running recipe steps as logged jobs on this machine.
#
#   utils/run.sh [options] [JOB=1:N] LOGFILE COMMAND [ARGS...]
#
# Without a range, COMMAND runs once; its output (stdout and stderr) goes to LOGFILE. With `JOB=1:N` (any variable
# name, e.g. `SPLIT=1:4`) it runs N times, with every occurrence of the name in LOGFILE and in the arguments
# replaced by the job index 1..N (`log/decode.JOB.log` -> `log/decode.3.log`). Options:
#
#   --nj N             run at most N jobs at the same time (default: all of them)
#   --max-jobs-run N   the same (Kaldi's name)
#   --gpu N, --mem X, --num-threads N, --time T
#                      accepted and ignored, so the commands written for cluster runners work here
#
# Each log starts with `# COMMAND` and `# Started at DATE` and ends with `# Accounting: time=SECONDS` and
# `# Ended (code STATUS) at DATE`. The runner exits 0 when every job succeeded; otherwise it names each failing log
# on stderr and exits 1. As in run.pl, COMMAND and ARGS are joined into one shell command: a single-word argument
# is passed through as is (so `|`, `>` and `&&` keep their shell meaning) and an argument holding spaces or quotes
# is quoted. SIGINT/SIGTERM are forwarded to the running commands (training then saves a checkpoint) and the runner
# exits with 128 + the signal number.
set -euo pipefail

usage="Usage: $0 [--nj N] [--gpu N] [--mem X] [--num-threads N] [JOB=1:N] LOGFILE COMMAND [ARGS...]"

max_jobs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nj | --max-jobs-run | --max_jobs_run)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      max_jobs="$2"
      shift 2
      ;;
    --gpu | --mem | --num-threads | --num_threads | --time | --config)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      shift 2
      ;;
    --help | -h)
      echo "${usage}"
      exit 0
      ;;
    --*)
      echo "$0: unknown option $1" >&2
      echo "${usage}" >&2
      exit 1
      ;;
    *) break ;;
  esac
done
case "${max_jobs}" in
  '' | *[!0-9]*) echo "$0: --nj must be a non-negative integer, got '${max_jobs}'" >&2; exit 1 ;;
esac

var=""
first=1
last=1
if [ $# -gt 0 ] && [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  var="${BASH_REMATCH[1]}"
  first="${BASH_REMATCH[2]}"
  last="${BASH_REMATCH[3]}"
  shift
  if [ "${first}" -gt "${last}" ]; then
    echo "$0: empty job range ${var}=${first}:${last}" >&2
    exit 1
  fi
fi
if [ $# -lt 2 ]; then
  echo "$0: expected a log file and a command" >&2
  echo "${usage}" >&2
  exit 1
fi
logfile="$1"
shift

# The shell command of job $1: arguments joined, the range variable replaced, multi-word arguments quoted.
job_command() {
  local index="$1" arg out=""
  shift
  for arg in "$@"; do
    [ -z "${var}" ] || arg="${arg//${var}/${index}}"
    if [[ -n "${arg}" && "${arg}" =~ ^[^[:space:]\'\"]+$ ]]; then
      out+="${arg} "
    else
      out+="$(printf '%q' "${arg}") "
    fi
  done
  printf '%s' "${out% }"
}

job_log() {
  if [ -n "${var}" ]; then printf '%s' "${logfile//${var}/$1}"; else printf '%s' "${logfile}"; fi
}

status_dir="$(mktemp -d "${TMPDIR:-/tmp}/run_sh.XXXXXX")"
pids=()

# Forward a signal to the commands (the children of each job's subshell) and to the subshells, then stop.
on_signal() {
  local sig="$1" code="$2" pid
  trap - INT TERM
  for pid in "${pids[@]}"; do
    pkill -"${sig}" -P "${pid}" 2>/dev/null || true
  done
  wait || true
  rm -rf "${status_dir}"
  echo "$0: interrupted by SIG${sig}" >&2
  exit "${code}"
}
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

for ((i = first; i <= last; i++)); do
  if [ "${max_jobs}" -gt 0 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "${max_jobs}" ]; do
      wait -n || true
    done
  fi
  log="$(job_log "${i}")"
  cmd="$(job_command "${i}" "$@")"
  mkdir -p "$(dirname "${log}")"
  (
    trap - INT TERM
    start=$(date +%s)
    {
      echo "# ${cmd}"
      echo "# Started at $(date)"
      echo "#"
    } > "${log}"
    rc=0
    bash -c "${cmd}" >> "${log}" 2>&1 || rc=$?
    {
      echo "# Accounting: time=$(($(date +%s) - start)) threads=1"
      echo "# Ended (code ${rc}) at $(date)"
    } >> "${log}"
    echo "${rc}" > "${status_dir}/${i}"
  ) &
  pids+=("$!")
done
wait || true

failed=()
for ((i = first; i <= last; i++)); do
  rc="$(cat "${status_dir}/${i}" 2>/dev/null || echo missing)"
  [ "${rc}" = 0 ] || failed+=("$(job_log "${i}") (code ${rc})")
done
rm -rf "${status_dir}"
total=$((last - first + 1))
if [ ${#failed[@]} -gt 0 ]; then
  echo "$0: ${#failed[@]} / ${total} job(s) failed; see:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
exit 0
