#!/usr/bin/env bash
# Create, set up, run on, and delete a Cloud TPU VM for churn_jax (docs/TPU.md).
#
#   launch/tpu_vm.sh create          # the TPU VM (all hosts of the slice)
#   launch/tpu_vm.sh setup           # on every host: python 3.11 venv, pip install, gcsfuse mount
#   launch/tpu_vm.sh prepare cifar10 # once per bucket: TFDS array_record files (needs TF + net)
#   launch/tpu_vm.sh run --config=experiments/cifar10.py --workdir=gs://$BUCKET/churn/cifar10
#   launch/tpu_vm.sh logs | ssh | delete
#   launch/tpu_vm.sh all <run args>  # create + setup + run, delete when done or failed
#
# Every setting below can be overridden from the environment (TPU_NAME=x launch/tpu_vm.sh ...).
# Where things go: gs://$BUCKET is mounted with gcsfuse at /mnt/$BUCKET on every host.
#   datasets:  gs://$BUCKET/tensorflow_datasets        (TFDS_DATA_DIR on the hosts)
#   results:   the --workdir (a gs://$BUCKET/... workdir is rewritten to the mount, because
#              the trainer writes results.{json,csv,md} with plain file I/O)
#   logs:      gs://$BUCKET/churn_logs/$TPU_NAME/<host>.log (stdout + stderr of every host)
set -euo pipefail

PROJECT="${PROJECT:-my-gcp-project}"
ZONE="${ZONE:-europe-west4-a}"                      # v3 TPUs: europe-west4-a, us-central1-a
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v3-8}"        # one host, 8 TPU v3 cores
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
BUCKET="${BUCKET:-my-churn-bucket}"                 # without gs://
TPU_NAME="${TPU_NAME:-churn-jax}"
SPOT="${SPOT:-0}"                                   # 1: spot (preemptible) VM
JAX_VERSION="${JAX_VERSION:-0.10.2}"                # must match setup.cfg

MOUNT="/mnt/${BUCKET}"
DATA_DIR="${MOUNT}/tensorflow_datasets"
LOG_DIR="${MOUNT}/churn_logs/${TPU_NAME}"
REMOTE_DIR="churn_jax"                              # under the remote $HOME
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

gc() { gcloud --project="${PROJECT}" "$@"; }

# Runs a shell command on every host of the slice.
on_all() {
  gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all --command="$1"
}

create() {
  local spot=()
  [[ "${SPOT}" == 1 ]] && spot=(--spot)
  gc compute tpus tpu-vm create "${TPU_NAME}" --zone="${ZONE}" \
    --accelerator-type="${ACCELERATOR_TYPE}" --version="${RUNTIME_VERSION}" \
    --scopes=https://www.googleapis.com/auth/cloud-platform "${spot[@]}"
}

setup() {
  # The working tree as it is here (tracked and new, not ignored, files), not a git remote.
  local tarball="/tmp/${TPU_NAME}-src.tgz"
  (cd "${REPO_ROOT}" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - -czf "${tarball}")
  gc compute tpus tpu-vm scp "${tarball}" "${TPU_NAME}:~/churn_jax_src.tgz" \
    --zone="${ZONE}" --worker=all
  on_all "set -e
    sudo apt-get update -qq
    sudo apt-get install -y -qq python3.11 python3.11-venv curl lsb-release
    if ! command -v gcsfuse >/dev/null; then
      echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" \
        | sudo tee /etc/apt/sources.list.d/gcsfuse.list
      curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg \
        | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
      sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
    fi
    sudo mkdir -p ${MOUNT} && sudo chown \$(id -u):\$(id -g) ${MOUNT}
    mountpoint -q ${MOUNT} || gcsfuse --implicit-dirs ${BUCKET} ${MOUNT}
    rm -rf ~/${REMOTE_DIR} && mkdir -p ~/${REMOTE_DIR}
    tar xzf ~/churn_jax_src.tgz -C ~/${REMOTE_DIR}
    cd ~/${REMOTE_DIR} && python3.11 -m venv .venv
    .venv/bin/pip install -q -U pip
    .venv/bin/pip install -q -e . 'jax[tpu]==${JAX_VERSION}'
    .venv/bin/python -c 'import jax; print(jax.devices())'"
}

prepare() {
  # TFDS needs TensorFlow and the internet to build a dataset; the TPU VM has both. Builds
  # on local disk (random writes through gcsfuse are slow), then copies to the bucket.
  # ImageNet / iNaturalist: put the original archives in
  # gs://$BUCKET/tensorflow_datasets/downloads/manual/ first (they cannot be downloaded).
  local name="${1:?usage: tpu_vm.sh prepare <tfds name>}"
  # A venv of its own: TensorFlow's pins must not move the training venv's numpy or jax.
  gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=0 --command="set -e
    [[ -x ~/tfds_venv/bin/tfds ]] || { python3.11 -m venv ~/tfds_venv &&
      ~/tfds_venv/bin/pip install -q tensorflow-cpu==2.21.0 tensorflow-datasets==4.9.10; }
    ~/tfds_venv/bin/tfds build ${name} --file_format=array_record --data_dir=/tmp/tfds \
      --manual_dir=${DATA_DIR}/downloads/manual
    gcloud storage cp -r /tmp/tfds/${name} gs://${BUCKET}/tensorflow_datasets/"
}

run() {
  # Every host runs the same command (multi-host slices: churn_jax.distributed).
  local args=() a
  for a in "$@"; do
    [[ "${a}" == --workdir=gs://"${BUCKET}"/* ]] && a="--workdir=${MOUNT}/${a#--workdir=gs://${BUCKET}/}"
    args+=("$(printf '%q' "${a}")")
  done
  on_all "cd ~/${REMOTE_DIR} && mkdir -p ${LOG_DIR} &&
    TFDS_DATA_DIR=${DATA_DIR} .venv/bin/python launch/main.py ${args[*]} \
      2>&1 | tee ${LOG_DIR}/\$(hostname).log; exit \${PIPESTATUS[0]}"
}

logs() { on_all "tail -n 50 ${LOG_DIR}/\$(hostname).log"; }

delete() { gc compute tpus tpu-vm delete "${TPU_NAME}" --zone="${ZONE}" --quiet; }

case "${1:-}" in
  create) create ;;
  setup) setup ;;
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  logs) logs ;;
  ssh) gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker="${WORKER:-0}" ;;
  delete) delete ;;
  all) shift; create; trap delete EXIT; setup; run "$@" ;;
  *) echo "usage: $0 create|setup|prepare <name>|run <main.py args>|logs|ssh|delete|all <args>" >&2
     exit 2 ;;
esac
