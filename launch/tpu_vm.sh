#!/usr/bin/env bash
# Create, set up, run on, and delete a Cloud TPU VM for churn_jax (docs/TPU.md).
#
#   launch/tpu_vm.sh create          # the TPU VM (all hosts of the slice); QUEUED=1 queues it
#   launch/tpu_vm.sh setup           # every host: venv with the churn_jax sdist + jax[tpu]
#   launch/tpu_vm.sh prepare cifar10 # once per bucket: TFDS array_record files (needs TF + net)
#   launch/tpu_vm.sh run --config=experiments/cifar10.py --workdir=gs://$BUCKET/churn/cifar10
#   launch/tpu_vm.sh status | wait | logs | stop | ssh | delete
#   launch/tpu_vm.sh all [--keep] <run args>  # create + setup + run + wait, then delete
#
# Every setting below can be overridden from the environment (TPU_NAME=x launch/tpu_vm.sh ...).
# The run is detached from the SSH session (setsid nohup on every host): a dropped
# connection leaves it running, and `run` again with the same arguments resumes the study
# from its checkpoints (it refuses while a run is alive). Where things go:
#   datasets:  gs://$BUCKET/tensorflow_datasets, read through a read-only gcsfuse mount
#   results:   the --workdir itself; a gs:// workdir is passed as is (orbax and
#              churn_jax.runtime.fileio write to gs:// directly: no gcsfuse renames)
#   logs:      gs://$BUCKET/churn_logs/$TPU_NAME/<host>.log, copied every LOG_SYNC_SECONDS
#              while the run goes on, and <host>.exit (the exit status) when it ends, however
#              it ends (a trap in run.sh: also on `stop` and a preemption's SIGTERM)
# `status` prints one line per host: running, exit N, idle, or unreachable (ssh failed: a
# rebooting or preempted VM); `wait` keeps polling through unreachable hosts, and `all`
# deletes the VM only once no run is alive (or when create/setup/run failed, unless --keep).
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
UNREACHABLE_POLLS="${UNREACHABLE_POLLS:-30}"        # wait gives up after this many in a row
APT_LOCK_SECONDS="${APT_LOCK_SECONDS:-900}"         # unattended-upgrades holds it after boot
PREPARE_DIR="${PREPARE_DIR:-gs://${BUCKET}/tensorflow_datasets}"  # never the boot disk

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

# The read-only dataset mount, as commands for a host; made by `setup` and again by `run` (a
# reboot or a maintenance event unmounts it).
mount_data() {
  echo "sudo mkdir -p ${MOUNT} && sudo chown \$(id -u):\$(id -g) ${MOUNT}
    mountpoint -q ${MOUNT} || gcsfuse --implicit-dirs -o ro ${BUCKET} ${MOUNT}"
}

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
  local apt="sudo apt-get -o DPkg::Lock::Timeout=${APT_LOCK_SECONDS}"
  on_all "set -e
    ${apt} update -qq
    ${apt} install -y -qq python3.11 python3.11-venv curl lsb-release
    if ! command -v gcsfuse >/dev/null; then
      echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" \
        | sudo tee /etc/apt/sources.list.d/gcsfuse.list
      curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg \
        | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
      ${apt} update -qq && ${apt} install -y -qq gcsfuse
    fi
    $(mount_data)
    mkdir -p ~/${REMOTE_DIR} && cd ~/${REMOTE_DIR}
    rm -rf launch experiments && tar xzf ~/${REMOTE_DIR}_dist/churn_jax_files.tgz
    [[ -x .venv/bin/python ]] || python3.11 -m venv .venv
    .venv/bin/pip install -q -U pip
    .venv/bin/pip install -q --force-reinstall --no-deps ~/${REMOTE_DIR}_dist/churn_jax-*.tar.gz
    # The gcs extra: gcsfs, which gs:// workdirs need (fileio.py, workdir_lock.py).
    sdist=\$(ls ~/${REMOTE_DIR}_dist/churn_jax-*.tar.gz)
    .venv/bin/pip install -q \"churn_jax[gcs] @ file://\${sdist}\" \
      'jax[tpu]==${JAX_VERSION}'
    JAX_PLATFORMS=tpu .venv/bin/python -c 'import jax; print(jax.devices())'"
}

prepare() {
  # TFDS needs TensorFlow and the internet to build a dataset; the TPU VM has both. Builds
  # into PREPARE_DIR: the bucket itself by default (TensorFlow writes gs:// directly), or a
  # mounted data disk (then copied to the bucket). Never the 100 GiB boot disk: imagenet2012
  # as array_record alone is ~156 GiB.
  # ImageNet / iNaturalist: put the original archives in
  # gs://$BUCKET/tensorflow_datasets/downloads/manual/ first (they cannot be downloaded).
  local name="${1:?usage: tpu_vm.sh prepare <tfds name>}"
  local copy=""
  if [[ "${PREPARE_DIR}" != gs://* ]]; then
    copy="gcloud storage cp -r ${PREPARE_DIR}/${name} gs://${BUCKET}/tensorflow_datasets/"
  fi
  # A venv of its own: TensorFlow's pins must not move the training venv's numpy or jax.
  gc compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=0 --command="set -e
    if [[ '${PREPARE_DIR}' != gs://* ]]; then
      mkdir -p ${PREPARE_DIR}
      if [[ \$(stat -c %d ${PREPARE_DIR}) == \$(stat -c %d /) ]]; then
        echo 'error: PREPARE_DIR=${PREPARE_DIR} is on the boot disk; use gs:// or a data disk' >&2
        exit 1
      fi
    fi
    $(mount_data)
    [[ -x ~/tfds_venv/bin/tfds ]] || { python3.11 -m venv ~/tfds_venv &&
      ~/tfds_venv/bin/pip install -q tensorflow-cpu==2.21.0 tensorflow-datasets==4.9.10; }
    ~/tfds_venv/bin/tfds build ${name} --file_format=array_record --data_dir=${PREPARE_DIR} \
      --manual_dir=${DATA_DIR}/downloads/manual
    ${copy}"
}

# The script every host runs, detached: training (JAX_PLATFORMS=tpu: a TPU that fails to
# start is an error, never a silent CPU run), the log copied to the bucket while it runs, and,
# on any exit (SIGTERM from `stop` or a preemption included), the exit status recorded and the
# last log uploaded. Python runs in the background so a signal reaches the trap at once; the
# training process gets the same SIGTERM (same process group, or forwarded by the trap),
# checkpoints and exits 143, which is the status recorded.
runner_script() {
  local args="$1"
  cat <<EOF
#!/usr/bin/env bash
cd ~/${REMOTE_DIR}
host=\$(hostname)
mkdir -p logs && rm -f run.rc
rc=
record() {
  rc=\${rc:-\$1}
  kill \${sync_pid} 2>/dev/null
  gcloud storage cp -q logs/run.log ${LOG_URL}/\${host}.log >/dev/null 2>&1
  echo \${rc} > run.rc
  echo \${rc} | gcloud storage cp -q - ${LOG_URL}/\${host}.exit >/dev/null 2>&1
}
trap 'record \$?' EXIT
trap 'kill -TERM \${py_pid} 2>/dev/null' TERM INT
( while sleep ${LOG_SYNC_SECONDS}; do
    gcloud storage cp -q logs/run.log ${LOG_URL}/\${host}.log >/dev/null 2>&1
  done ) &
sync_pid=\$!
JAX_PLATFORMS=tpu TFDS_DATA_DIR=${DATA_DIR} .venv/bin/python launch/main.py ${args} \\
  >> logs/run.log 2>&1 &
py_pid=\$!
# A trapped signal interrupts wait; wait again for the training process's own status.
wait \${py_pid}; code=\$?
while kill -0 \${py_pid} 2>/dev/null; do wait \${py_pid}; code=\$?; done
rc=\${code}
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
    $(mount_data)
    cat > run.sh <<'CHURN_RUN_EOF'
${script}
CHURN_RUN_EOF
    chmod +x run.sh
    setsid nohup ./run.sh > /dev/null 2>&1 < /dev/null &
    echo \$! > run.pid
    echo \"\$(hostname): started (pid \$(cat run.pid)); log ${LOG_URL}/\$(hostname).log\""
}

# One line per host: 'running', 'exit N' or 'idle'; 'TPU_NAME unreachable' when ssh failed
# (a rebooting, preempted or deleted VM: whether a run is alive is then unknown).
status() {
  local out rc=0
  out="$(on_all "cd ~/${REMOTE_DIR} 2>/dev/null || { echo \"\$(hostname) idle\"; exit 0; }
    if [[ -f run.pid ]] && kill -0 \$(cat run.pid) 2>/dev/null; then echo \"\$(hostname) running\"
    elif [[ -f run.rc ]]; then echo \"\$(hostname) exit \$(cat run.rc)\"
    else echo \"\$(hostname) idle\"; fi" 2>/dev/null)" || rc=$?
  if [[ -n "${out}" ]]; then echo "${out}"; fi
  if [[ ${rc} -ne 0 ]]; then echo "${TPU_NAME} unreachable"; fi
  return 0
}

# Polls until no host is running or unreachable: returns 0 when every host exited 0, 1 when
# one did not, 2 when the VM stayed unreachable for UNREACHABLE_POLLS polls in a row (a run
# may still be alive).
wait_run() {
  local out missed=0
  while true; do
    out="$(status)"
    echo "${out}" >&2
    if grep -q ' unreachable$' <<<"${out}"; then
      missed=$((missed + 1))
      if [[ ${missed} -ge ${UNREACHABLE_POLLS} ]]; then
        echo "error: ${TPU_NAME} unreachable for ${missed} polls; whether its run is alive" \
          "is unknown" >&2
        return 2
      fi
    else
      missed=0
      grep -q ' running$' <<<"${out}" || break
    fi
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
    # Each phase runs as its own process (set -e holds inside it). A failed create, setup or
    # run deletes the VM unless --keep; after a run started, the VM is deleted only once no
    # host runs it (never while it may be alive). An interrupted `all` leaves the run going;
    # `wait` and `delete` finish the job.
    shift; keep=0
    if [[ "${1:-}" == --keep ]]; then keep=1; shift; fi
    runtime_version >/dev/null
    self=("${BASH}" "${BASH_SOURCE[0]}")
    rc=0
    "${self[@]}" create && "${self[@]}" setup && "${self[@]}" run "$@" || rc=$?
    if [[ ${rc} -ne 0 ]]; then
      if [[ ${keep} == 1 ]]; then
        echo "error: failed (exit ${rc}); --keep: ${TPU_NAME} is left up (delete it with:" \
          "$0 delete)" >&2
      else
        echo "error: failed (exit ${rc}); deleting ${TPU_NAME}" >&2
        delete || true
      fi
      exit "${rc}"
    fi
    wait_run || rc=$?
    if [[ ${rc} -eq 2 ]]; then
      echo "error: ${TPU_NAME} is left up: its run may be alive; check with $0 status," \
        "then $0 delete" >&2
    elif [[ ${rc} -ne 0 && ${keep} == 1 ]]; then
      echo "error: the run failed; --keep: ${TPU_NAME} is left up" >&2
    else
      delete
    fi
    exit "${rc}" ;;
  *) echo "usage: $0 create|setup|prepare <name>|run <main.py args>|status|wait|logs|stop|ssh|delete|all [--keep] <args>" >&2
     exit 2 ;;
esac
