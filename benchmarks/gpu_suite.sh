#!/usr/bin/env bash
# Every GPU measurement of issue 27 in one run (limits sum to 475 s on one H100/H200), each step under its
# own timeout and printing as it goes, so a cut window still returns the finished steps.
#
#   bash benchmarks/gpu_suite.sh 2>&1 | tee gpu_suite.log          # on the GPU machine
#
# The GPU machine reaches no package registry and lacks ml-collections, tensorboardX and
# mnist1d: bring them as wheels in the git-ignored .gpu_wheels/ (run here, where pip works):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .gpu_wheels \
#     ml-collections==1.1.0 tensorboardX==2.6.5 mnist1d==0.0.2.post1
# and carry .gpu_wheels with the checkout. Results go to $OUT (default /tmp/gpu_suite).
# NOT RUN YET: written and syntax-checked on CPU; docs/PERFORMANCE.md holds no GPU numbers.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT"
SITE="$OUT/site"
if [ -d .gpu_wheels ] && [ ! -d "$SITE" ]; then
  python -m pip install --quiet --no-index --no-deps --target "$SITE" .gpu_wheels/*.whl
fi
export PYTHONPATH="$PWD:$SITE:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
START=$(date +%s)

step() {  # step NAME SECONDS CMD...: run with a timeout, print its wall time and exit code.
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s, t=$(( $(date +%s) - START ))s): $*"
  local t0; t0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" 2>&1 | grep -v -e "^W1\|^I1\|libtpu\|cuda_dnn\|^ *warnings.warn"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc wall=$(python -c "import time;print(f'{time.time()-$t0:.1f}')")s"
}

# 1. The machine (10 s).
step machine 15 bash -c 'nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv;
  python -c "import jax, flax; print(jax.__version__, flax.__version__, jax.devices())"'

# 2. Default study wall time (goal <= 15 s): one dispatch per step, then 50 steps per dispatch,
#    (the MLP is dispatch-bound; progress bar off, throughput in timings.json).
for spl in 1 50; do
  step "default study steps_per_loop=$spl" 60 python launch/main.py \
    --config=experiments/mnist1d.py --workdir="$OUT/default_spl$spl" \
    --config.steps_per_loop=$spl --config.progress=False --config.compile_cache_dir=
  cat "$OUT/default_spl$spl/timings.json" 2>/dev/null | tr -d '\n ' | head -c 1500; echo
done

# 3. ResNet-20 / ResNet-56 one model and the 5x2 stack against PyTorch's best variant
#    (fp32, channels_last, bf16 autocast, torch.compile), batch 128 and the paper's 1024.
step "torch side by side, batch 128" 70 python benchmarks/torch_side_by_side.py \
  --device=cuda --models=resnet20 --batch_size=128 --compute_dtypes=float32,bfloat16 --steps=20
step "torch side by side, batch 1024, 5x2 stack" 130 python benchmarks/torch_side_by_side.py \
  --device=cuda --models=resnet56,resnet20 --batch_size=1024 --compute_dtypes=bfloat16,float32 \
  --stack=5x2 --steps=10

# 4. Stack layouts per model (vmap / loop against separate steps): strategy=auto's evidence.
step "stack layouts" 60 python benchmarks/stack_throughput.py --json --models=mlp,lenet5,resnet20 \
  --stacks=1x1,4x2 --strategies=vmap,loop --devices=1 --steps=10

# 5. Table 1's GPU column: identical runs, with and without deterministic ops.
for det in nodeterministic_ops deterministic_ops; do
  step "table1 digits --$det" 40 python launch/table1.py --config=experiments/digits.py:quick \
    --workdir="$OUT/table1_$det" --$det
done

echo "=== done in $(( $(date +%s) - START ))s; outputs under $OUT"
