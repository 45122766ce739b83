# shellcheck shell=bash
# How recipe stages launch jobs (the ESPnet/Kaldi cmd.sh slot). voxar's entry points parallelise themselves
# (--nj worker processes on this machine), so every command runs locally and directly: the *_cmd variables are
# empty prefixes. A cluster setup would put its job launcher here (e.g. a queue wrapper) for later stages.
export cmd_backend=local
export train_cmd=""
export decode_cmd=""
