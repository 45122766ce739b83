# shellcheck shell=bash
# Helpers shared by the recipe drivers (tts.sh, vc.sh): option checks, the training launcher, .done markers and
# training stages. Source it after utils/parse_options.sh; it reads the drivers' option variables (ngpu, nproc,
# torchrun_opts, threads, python) and the job runner ${cuda_cmd} of cmd.sh.
#
# A stage's .done marker holds a *signature*: the settings and input stamps the stage ran with. A rerun with the same
# signature skips the stage; any change (an option, a config file's content, a newer input model) reruns it.

# check_uint NAME...: each named variable holds a non-negative integer, else exit 1 naming the option.
check_uint() {
  local name
  for name in "$@"; do
    case "${!name}" in
      '' | *[!0-9]*) echo "$0: --${name} must be a non-negative integer, got '${!name}'" >&2; exit 1 ;;
    esac
  done
}

# setup_launcher: sets device (cpu or cuda), launcher (how training starts) and thread_opt from the options.
# One process: ${python}. Several (--ngpu K > 1, or --nproc N > 1 for CPU DDP) or --torchrun_opts: torchrun, i.e.
# ${python} -m torch.distributed.run --nproc_per_node N, with --standalone (one node, a free rendezvous port) unless
# --torchrun_opts gives the multi-node flags (--nnodes, --node_rank, --rdzv_endpoint / --master_addr ...).
setup_launcher() {
  local procs="${nproc}"
  device=cpu
  [ "${ngpu}" -eq 0 ] || device=cuda
  [ "${procs}" -gt 0 ] || procs=$((ngpu > 1 ? ngpu : 1))
  launcher="${python}"
  if [ "${procs}" -gt 1 ] || [ -n "${torchrun_opts}" ]; then
    launcher="${python} -m torch.distributed.run --nproc_per_node ${procs} ${torchrun_opts:---standalone}"
  fi
  thread_opt=""
  [ "${threads}" -eq 0 ] || thread_opt="--threads ${threads}"
}

# stamp FILE...: modification times of the files (missing ones are left out), for signatures.
stamp() {
  stat -c '%Y' "$@" 2>/dev/null | tr '\n' ' ' || true
}

# config_hash FILE: the content hash of a config file, for signatures.
config_hash() {
  md5sum < "$1" | cut -d' ' -f1
}

# is_done MARKER SIGNATURE: the marker exists and holds the same signature.
is_done() {
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

# write_rerun EXP STAGE: EXP/run.sh reruns (and so resumes) exactly that stage with the driver's original command
# line (${cmdline}, captured before option parsing).
write_rerun() {
  mkdir -p "$1"
  {
    echo "#!/usr/bin/env bash"
    echo "# Reruns stage $2 of the recipe; training resumes from the last checkpoint."
    echo "cd $(printf '%q' "$(pwd)") && ${cmdline}--stage $2 --stop_stage $2"
  } > "$1/run.sh"
  chmod +x "$1/run.sh"
}

# train STAGE NAME EXP SIGNATURE COMMAND...: a training stage. Skipped when EXP/.done holds SIGNATURE; otherwise
# COMMAND runs through ${cuda_cmd} with its log in EXP/train.log and the marker is written when it succeeds. The
# commands always carry --resume, so a rerun after a crash or a kill continues from EXP/last.pt.
train() {
  local stage_n="$1" name="$2" exp="$3" sig="$4"
  shift 4
  if is_done "${exp}/.done" "${sig}"; then
    log "Stage ${stage_n}: already done (${exp}/.done)"
    return 0
  fi
  rm -f "${exp}/.done"
  write_rerun "${exp}" "${stage_n}"
  log "Stage ${stage_n}: training ${name} (log: ${exp}/train.log)"
  # shellcheck disable=SC2154  # cuda_cmd comes from cmd.sh
  ${cuda_cmd} --gpu "${ngpu}" "${exp}/train.log" "$@"
  echo "${sig}" > "${exp}/.done"
}

# show_eval DIR: print the metric table of DIR/eval.md on stderr.
show_eval() {
  log "$1/eval.md:"
  sed -n '/^| metric/,/^$/p' "$1/eval.md" >&2
}
