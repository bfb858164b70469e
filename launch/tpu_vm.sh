#!/usr/bin/env bash
# Create, set up, run on, and delete a Cloud TPU VM for churn_jax (docs/TPU.md).
#
#   launch/tpu_vm.sh create          # the TPU VM (all hosts of the slice); QUEUED=1 queues it
#   launch/tpu_vm.sh setup           # every host: venv with the churn_jax sdist + jax[tpu]
#   launch/tpu_vm.sh prepare cifar10 # once per bucket: TFDS array_record files (needs TF + net)
#   launch/tpu_vm.sh run --config=experiments/cifar10.py --workdir=gs://$BUCKET/churn/cifar10
#   launch/tpu_vm.sh status | wait | logs | stop | ssh | delete
#   launch/tpu_vm.sh all <run args>  # create + setup + run + wait, then delete
#
# Every setting below can be overridden from the environment (TPU_NAME=x launch/tpu_vm.sh ...).
# The run is detached from the SSH session (setsid nohup on every host): a dropped
# connection leaves it running, and `run` again with the same arguments resumes the study
# from its checkpoints (it refuses while a run is alive). Where things go:
#   datasets:  gs://$BUCKET/tensorflow_datasets, read through a read-only gcsfuse mount
#   results:   the --workdir itself; a gs:// workdir is passed as is (orbax and
#              churn_jax.runtime.fileio write to gs:// directly: no gcsfuse renames)
#   logs:      gs://$BUCKET/churn_logs/$TPU_NAME/<host>.log, copied every LOG_SYNC_SECONDS
#              while the run goes on, and <host>.exit (the exit status) when it ends
set -euo pipefail

PROJECT="${PROJECT:-my-gcp-project}"
ZONE="${ZONE:-europe-west4-a}"                      # v3 TPUs: europe-west4-a, us-central1-a
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v3-8}"        # one host, 8 TPU v3 cores
RUNTIME_VERSION="${RUNTIME_VERSION:-}"              # empty: derived from ACCELERATOR_TYPE
BUCKET="${BUCKET:-my-churn-bucket}"                 # without gs://
TPU_NAME="${TPU_NAME:-churn-jax}"
SPOT="${SPOT:-0}"                                   # 1: spot (preemptible) capacity
QUEUED="${QUEUED:-0}"                               # 1: a queued resource (the recommended path)
JAX_VERSION="${JAX_VERSION:-0.10.2}"                # must match setup.cfg
PYTHON="${PYTHON:-python3}"                         # here: builds the sdist (setuptools)
LOG_SYNC_SECONDS="${LOG_SYNC_SECONDS:-60}"
POLL_SECONDS="${POLL_SECONDS:-60}"                  # create (queued) and wait

MOUNT="/mnt/${BUCKET}"
DATA_DIR="${MOUNT}/tensorflow_datasets"
LOG_URL="gs://${BUCKET}/churn_logs/${TPU_NAME}"
REMOTE_DIR="churn_jax"                              # under the remote $HOME
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { echo "error: $*" >&2; exit 1; }

# The TPU software version each generation needs (cloud.google.com/tpu/docs/runtimes).
runtime_version() {
  if [[ -n "${RUNTIME_VERSION}" ]]; then echo "${RUNTIME_VERSION}"; return; fi
  case "${ACCELERATOR_TYPE}" in
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "no runtime version known for ACCELERATOR_TYPE=${ACCELERATOR_TYPE};" \
         "set RUNTIME_VERSION" ;;
  esac
}

gc() { gcloud --project="${PROJECT}" "$@"; }

# Runs a shell command on every host of the slice.
on_all() {
  gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all --command="$1"
}

create() {
  local version spot=()
  version="$(runtime_version)"
  [[ "${SPOT}" == 1 ]] && spot=(--spot)
  if [[ "${QUEUED}" == 1 ]]; then
    gc compute tpus queued-resources create "${TPU_NAME}" --node-id="${TPU_NAME}" \
      --zone="${ZONE}" --accelerator-type="${ACCELERATOR_TYPE}" \
      --runtime-version="${version}" "${spot[@]}"
    local state
    while true; do  # A queued resource waits for capacity; the VM exists once it is ACTIVE.
      state="$(gc compute tpus queued-resources describe "${TPU_NAME}" --zone="${ZONE}" \
        --format='value(state.state)')"
      case "${state}" in
        ACTIVE) break ;;
        FAILED|SUSPENDED) die "queued resource ${TPU_NAME} is ${state}" ;;
      esac
      echo "queued resource ${TPU_NAME}: ${state:-unknown}; waiting" >&2
      sleep "${POLL_SECONDS}"
    done
  else
    gc compute tpus tpu-vm create "${TPU_NAME}" --zone="${ZONE}" \
      --accelerator-type="${ACCELERATOR_TYPE}" --version="${version}" \
      --scopes=https://www.googleapis.com/auth/cloud-platform "${spot[@]}"
  fi
}

setup() {
  # An sdist of the package and a tarball of the launchers and configs: nothing on the VM
  # needs git or this checkout.
  local stage
  stage="$(mktemp -d)"
  (cd "${REPO_ROOT}" && "${PYTHON}" -c \
    'import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])' \
    "${stage}" >/dev/null) || die "could not build the churn_jax sdist in ${REPO_ROOT}"
  tar -C "${REPO_ROOT}" -czf "${stage}/churn_jax_files.tgz" launch experiments
  on_all "mkdir -p ~/${REMOTE_DIR}_dist && rm -f ~/${REMOTE_DIR}_dist/*"
  gc compute tpus tpu-vm scp "${stage}"/* "${TPU_NAME}:~/${REMOTE_DIR}_dist/" \
    --zone="${ZONE}" --worker=all
  rm -rf "${stage}"
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
    mountpoint -q ${MOUNT} || gcsfuse --implicit-dirs -o ro ${BUCKET} ${MOUNT}
    mkdir -p ~/${REMOTE_DIR} && cd ~/${REMOTE_DIR}
    rm -rf launch experiments && tar xzf ~/${REMOTE_DIR}_dist/churn_jax_files.tgz
    [[ -x .venv/bin/python ]] || python3.11 -m venv .venv
    .venv/bin/pip install -q -U pip
    .venv/bin/pip install -q --force-reinstall --no-deps ~/${REMOTE_DIR}_dist/churn_jax-*.tar.gz
    .venv/bin/pip install -q ~/${REMOTE_DIR}_dist/churn_jax-*.tar.gz 'jax[tpu]==${JAX_VERSION}'
    JAX_PLATFORMS=tpu .venv/bin/python -c 'import jax; print(jax.devices())'"
}

prepare() {
  # TFDS needs TensorFlow and the internet to build a dataset; the TPU VM has both. Builds
  # on local disk, then copies to the bucket.
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

# The script every host runs, detached: training (JAX_PLATFORMS=tpu: a TPU that fails to
# start is an error, never a silent CPU run), the log copied to the bucket while it runs,
# and the exit status recorded at the end.
runner_script() {
  local args="$1"
  cat <<EOF
#!/usr/bin/env bash
cd ~/${REMOTE_DIR}
host=\$(hostname)
mkdir -p logs && rm -f run.rc
( while sleep ${LOG_SYNC_SECONDS}; do
    gcloud storage cp -q logs/run.log ${LOG_URL}/\${host}.log >/dev/null 2>&1
  done ) &
sync_pid=\$!
JAX_PLATFORMS=tpu TFDS_DATA_DIR=${DATA_DIR} .venv/bin/python launch/main.py ${args} \\
  >> logs/run.log 2>&1
rc=\$?
kill \${sync_pid} 2>/dev/null
gcloud storage cp -q logs/run.log ${LOG_URL}/\${host}.log >/dev/null 2>&1
echo \${rc} > run.rc
echo \${rc} | gcloud storage cp -q - ${LOG_URL}/\${host}.exit >/dev/null 2>&1
exit \${rc}
EOF
}

run() {
  [[ $# -gt 0 ]] || die "usage: tpu_vm.sh run <launch/main.py arguments>"
  local args=() a
  for a in "$@"; do args+=("$(printf '%q' "${a}")"); done
  local script
  script="$(runner_script "${args[*]}")"
  # Refuses to start a second copy; otherwise starts (or resumes) the study detached.
  on_all "set -e; cd ~/${REMOTE_DIR}
    if [[ -f run.pid ]] && kill -0 \$(cat run.pid) 2>/dev/null; then
      echo \"error: \$(hostname): a run is alive (pid \$(cat run.pid)); stop it first\" >&2
      exit 1
    fi
    cat > run.sh <<'CHURN_RUN_EOF'
${script}
CHURN_RUN_EOF
    chmod +x run.sh
    setsid nohup ./run.sh > /dev/null 2>&1 < /dev/null &
    echo \$! > run.pid
    echo \"\$(hostname): started (pid \$(cat run.pid)); log ${LOG_URL}/\$(hostname).log\""
}

# One line per host: 'running', 'exit N' or 'idle'.
status() {
  on_all "cd ~/${REMOTE_DIR} 2>/dev/null || { echo \"\$(hostname) idle\"; exit 0; }
    if [[ -f run.pid ]] && kill -0 \$(cat run.pid) 2>/dev/null; then echo \"\$(hostname) running\"
    elif [[ -f run.rc ]]; then echo \"\$(hostname) exit \$(cat run.rc)\"
    else echo \"\$(hostname) idle\"; fi"
}

# Polls until no host is running; fails unless every host exited 0.
wait_run() {
  local out
  while true; do
    out="$(status)"
    echo "${out}" >&2
    grep -q ' running$' <<<"${out}" || break
    sleep "${POLL_SECONDS}"
  done
  ! grep -qv ' exit 0$' <<<"${out}"
}

logs() { on_all "tail -n 50 ~/${REMOTE_DIR}/logs/run.log"; }

stop() {
  on_all "cd ~/${REMOTE_DIR} && [[ -f run.pid ]] && kill -TERM -\$(cat run.pid) 2>/dev/null; true"
}

delete() {
  if [[ "${QUEUED}" == 1 ]]; then
    gc compute tpus queued-resources delete "${TPU_NAME}" --zone="${ZONE}" --force --quiet
  else
    gc compute tpus tpu-vm delete "${TPU_NAME}" --zone="${ZONE}" --quiet
  fi
}

case "${1:-}" in
  create) create ;;
  setup) setup ;;
  prepare) shift; prepare "$@" ;;
  run) shift; run "$@" ;;
  status) status ;;
  wait) wait_run ;;
  logs) logs ;;
  stop) stop ;;
  ssh) gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker="${WORKER:-0}" ;;
  delete) delete ;;
  all)
    # The VM is deleted when the run ends (success or failure), not when this shell dies:
    # an interrupted `all` leaves the run going; `wait` and `delete` finish the job.
    shift; runtime_version >/dev/null; create; setup; run "$@"
    rc=0; wait_run || rc=$?
    delete; exit "${rc}" ;;
  *) echo "usage: $0 create|setup|prepare <name>|run <main.py args>|status|wait|logs|stop|ssh|delete|all <args>" >&2
     exit 2 ;;
esac
