# shellcheck shell=bash
# How recipe stages launch their jobs (the ESPnet/Kaldi cmd.sh slot). Recipes link to this file
# (egs/<corpus>/cmd.sh -> ../../recipes/cmd.sh); replace the link with a copy to change it for one recipe.
#
# Each *_cmd is a job runner with run.pl's interface:
#   ${train_cmd} [--gpu N] [--nj N] [JOB=1:N] LOGFILE COMMAND...
# utils/run.sh runs the jobs on this machine (its --gpu/--mem options are accepted and ignored). Multi-GPU and
# multi-node training is launched by the drivers themselves through torchrun (see --ngpu and --torchrun_opts of
# tts.sh / vc.sh), inside ${cuda_cmd}.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="utils/run.sh"  # CPU jobs: feature dumps, packing
    export cuda_cmd="utils/run.sh"   # training (GPU when --ngpu > 0)
    export decode_cmd="utils/run.sh" # decoding and evaluation
    ;;
  # A cluster backend puts its own runner here, with the same interface, e.g. for Slurm:
  #   slurm)
  #     export train_cmd="slurm.pl --config conf/slurm.conf"
  #     export cuda_cmd="slurm.pl --config conf/slurm.conf --gpu 1"
  #     export decode_cmd="slurm.pl --config conf/slurm.conf"
  #     ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (this template knows: local)" >&2
    return 1
    ;;
esac
