"""How far each lever moves the CPU train step of the conv nets (issue #15), side by side.

  python benchmarks/conv_levers.py                                # ResNet-20 and LeNet5
  python benchmarks/conv_levers.py --models=lenet5 --rounds=5 --json
  python benchmarks/conv_levers.py --levers=current,xla_grads     # a subset, by name
  python benchmarks/conv_levers.py --models=resnet20 --stack=4x2 --levers=current,llvm_O2

Each lever is a variant of churn_jax's real single-model train step (common.py: batch 128,
SGD with Nesterov momentum, method "baseline", strategy "loop"): a different convolution
or pooling traced into the model (models/layers.py is patched while the step is traced), an
XLA:CPU compiler option passed to that one compilation, or another device count. All
variants of a model are compiled first (compile seconds reported), then timed round-robin,
--steps steps per variant per round, so that a load that changes during the run hits every
variant alike; the median of all its steps is reported with its ratio to the "current" row
(the code as committed). Rows never change the shipped code: what the doc calls the best
combination is "current". The last column counts the YNNPACK / oneDNN / XNNPACK fusions of
the compiled program and all its convolutions (inside those fusions or run by Eigen).
"""

import functools
import json
import statistics
import time

from absl import app, flags
import flax.linen as nn
import jax
from jax import lax

from churn_jax.models import layers
from churn_jax.runtime import host_devices
import common  # benchmarks/common.py

_MODELS = flags.DEFINE_list("models", ["resnet20", "lenet5"], "Models.")
_LEVERS = flags.DEFINE_list("levers", [], "Lever names to run (default: all of the model's).")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per variant per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Round-robin rounds.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_STACK = flags.DEFINE_string("stack", "1x1", "R x M stack of independent members (loop "
                             "strategy), e.g. 4x2 for the compile time of a stacked program.")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per row instead of markdown.")

_LIB = "LIBRARY_FUSION_TYPE_"


def _variant_conv(weight_grad_chunk=layers.WEIGHT_GRAD_CHUNK, input_grad_chunk=0, pad=None,
                  scan=False, chunk_major=False, interleave=False, phase_input_grad=True,
                  tap_wgrad=""):
  """A CPU convolution like layers.cpu_conv with its choices made explicit (always CPU)."""
  pad = layers.PAD_FEW_CHANNELS if pad is None else pad  # None: this CPU's rule, as committed.

  def conv_fn(lhs, rhs, *args, **kwargs):
    conv = lambda l, r: lax.conv_general_dilated(l, r, *args, **kwargs)
    dn = kwargs.get("dimension_numbers")

    @jax.custom_vjp
    def f(lhs, rhs):
      return layers._padded_forward(conv, lhs, rhs, dn) if pad else conv(lhs, rhs)

    def fwd(lhs, rhs):
      return f(lhs, rhs), (lhs, rhs)

    def bwd(res, g):
      lhs, rhs = res
      n = lhs.shape[0]
      if phase_input_grad and tuple(args[0]) == (2, 2):
        d_lhs = layers._phase_input_grad(lhs, rhs, g, args[0], args[1])
      elif input_grad_chunk and n % input_grad_chunk == 0 and n > input_grad_chunk:
        d_lhs = jax.numpy.concatenate([
            jax.vjp(lambda x: conv(x, rhs), lhs[i:i + input_grad_chunk])[1](
                g[i:i + input_grad_chunk])[0] for i in range(0, n, input_grad_chunk)])
      else:
        d_lhs = jax.vjp(lambda x: conv(x, rhs), lhs)[1](g)[0]
      c = weight_grad_chunk
      if tap_wgrad and _plain(kwargs):
        d_rhs = _tap_weight_grad(lhs, g, rhs, args[0], args[1], tap_wgrad == "im2col")
      elif not c or n % c or n <= c:
        d_rhs = jax.vjp(lambda w: conv(lhs, w), rhs)[1](g)[0]
      elif chunk_major and all(d == 1 for k in ("lhs_dilation", "rhs_dilation")
                               for d in kwargs.get(k) or (1,)):
        d_rhs = _chunk_major_weight_grad(lhs, g, rhs, c, args[0], args[1])
      elif scan:  # One gradient convolution in a loop over the chunks: compiles once.
        xs = (lhs.reshape((n // c, c) + lhs.shape[1:]), g.reshape((n // c, c) + g.shape[1:]))
        step = lambda acc, xg: (acc + jax.vjp(lambda w: conv(xg[0], w), rhs)[1](xg[1])[0], None)
        d_rhs = lax.scan(step, jax.numpy.zeros_like(rhs), xs)[0]
      else:
        d_rhs = layers._chunked_weight_grad(conv, lhs, rhs, g, c, interleave)
      return d_lhs, d_rhs

    f.defvjp(fwd, bwd)
    return f(lhs, rhs)
  return conv_fn


def _plain(kwargs):
  return all(d == 1 for k in ("lhs_dilation", "rhs_dilation") for d in kwargs.get(k) or (1,))


def _tap_weight_grad(lhs, g, rhs, strides, padding, im2col):
  """The weight gradient with no convolution: one dot per kernel tap (or one im2col dot).

  dW[kh, kw, ci, co] = sum over (n, i, j) of x_pad[n, s*i + kh, s*j + kw, ci] * g[n, i, j, co]:
  for each tap a (Ci, NHW) x (NHW, Co) product of a shifted slice of the padded input with the
  cotangent, contracted over batch and space, so no (C, H, W, N) transpose is needed. `im2col`
  concatenates the taps' slices along channels and runs one (9 Ci, NHW) x (NHW, Co) product.
  """
  n, h, w, cin = lhs.shape
  _, ho, wo, cout = g.shape
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), (kh, kw), strides, padding)
  x = jax.numpy.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  sh, sw = strides
  tap = lambda a, b: x[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw]
  dot = lambda a: lax.dot_general(a, g, (((0, 1, 2), (0, 1, 2)), ((), ())))
  taps = [(a, b) for a in range(kh) for b in range(kw)]
  if im2col:
    cols = jax.numpy.concatenate([tap(a, b) for a, b in taps], axis=-1)
    return dot(cols).reshape(kh, kw, cin, cout)
  return jax.numpy.stack([dot(tap(a, b)) for a, b in taps]).reshape(kh, kw, cin, cout)


def _chunk_major_weight_grad(lhs, g, rhs, chunk, strides, padding):
  """The chunked weight gradient with both operands transposed once, chunk index major.

  lhs (N, H, W, C) -> (N/c, C, H, W, c) and g (N, Ho, Wo, Co) -> (N/c, Ho, Wo, c, Co): chunk i
  is then a contiguous slab already in the layout YNNPACK's convolution wants, instead of one
  strided transpose per chunk. Stride-s forward: window strides 1, rhs dilation s.
  """
  n, h, w, cin = lhs.shape
  _, ho, wo, cout = g.shape
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), (kh, kw), strides, padding)
  nc = n // chunk
  xt = lhs.reshape(nc, chunk, h, w, cin).transpose(0, 4, 2, 3, 1)
  gt = g.reshape(nc, chunk, ho, wo, cout).transpose(0, 2, 3, 1, 4)
  pads = [(lo, k + (o - 1) * s - size - lo) for (lo, _), k, o, s, size in
          zip(padding, (kh, kw), (ho, wo), strides, (h, w))]
  one = lambda i: lax.conv_general_dilated(xt[i], gt[i], (1, 1), pads, rhs_dilation=strides,
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
  total = functools.reduce(lambda a, b: a + b, [one(i) for i in range(nc)])
  return total.transpose(1, 2, 0, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x, scale, bias, epsilon):
  """Training-mode BatchNorm over all but the last axis, with a closed-form gradient.

  Forward as nn.BatchNorm (fast variance: E[x^2] - E[x]^2); backward in two reductions and one
  elementwise pass: dx = scale * inv / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)).
  Returns (y, mean, var); mean and var feed the running averages, not the loss.
  """
  mean, var = _bn_stats(x)
  return (x - mean) * (lax.rsqrt(var + epsilon) * scale) + bias, mean, var


def _bn_stats(x):
  axes = tuple(range(x.ndim - 1))
  mean = x.mean(axes)
  return mean, jax.numpy.maximum(0.0, (x * x).mean(axes) - mean * mean)


def _bn_fwd(x, scale, bias, epsilon):
  mean, var = _bn_stats(x)
  inv = lax.rsqrt(var + epsilon)
  y = (x - mean) * (inv * scale) + bias
  return (y, mean, var), (x, mean, inv, scale)


def _bn_bwd(epsilon, res, cotangents):
  del epsilon
  x, mean, inv, scale = res
  dy = cotangents[0]
  axes = tuple(range(x.ndim - 1))
  m = x.size // x.shape[-1]
  xhat = (x - mean) * inv
  dbias = dy.sum(axes)
  dscale = (dy * xhat).sum(axes)
  dx = (scale * inv / m) * (m * dy - dbias - xhat * dscale)
  return dx, dscale, dbias


_bn_train.defvjp(_bn_fwd, _bn_bwd)


class _FusedBatchNorm(nn.Module):
  """nn.BatchNorm's variables and values, with _bn_train's gradient in training."""
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    ra_mean = self.variable("batch_stats", "mean", lambda: jax.numpy.zeros((c,)))
    ra_var = self.variable("batch_stats", "var", lambda: jax.numpy.ones((c,)))
    if self.use_running_average:
      return (x - ra_mean.value) * (lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
    y, mean, var = _bn_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y


def _fused_batch_norm(train, name):
  return _FusedBatchNorm(use_running_average=not train, name=name)


def _flax_pool(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")


def _levers(model):
  """name -> dict(conv=..., pool=..., options=..., devices=..., what=...)."""
  d = dict
  if model == "lenet5":
    old = d(conv=lax.conv_general_dilated, pool=_flax_pool)  # Session 3: nn.Conv, nn.max_pool.
    lenet = functools.partial(_variant_conv, interleave=True)  # As layers.cpu_conv_split_batch.
    return {
        "current": d(devices=2, what="committed: padded forward (where the CPU rule says), "
                     "chunked weight grad (interleaved), reshape max pool; 2 devices (the "
                     "trainer's)"),
        "current_1dev": d(devices=1, what="committed code on 1 device"),
        "session3_2dev": d(old, devices=2, what="session 3: XLA conv + nn.max_pool, 2 devices"),
        "session3_1dev": d(old, devices=1, what="session 3 code on 1 device"),
        "no_pad": d(conv=lenet(pad=False), devices=2,
                    what="current without the padded forward (Eigen runs the convs)"),
        "pad": d(conv=lenet(pad=True), devices=2,
                 what="current with the padded forward (YNNPACK runs the convs)"),
        "no_pad_1dev": d(conv=lenet(pad=False), devices=1, what="no_pad on 1 device"),
        "pad_1dev": d(conv=lenet(pad=True), devices=1, what="pad on 1 device"),
        "no_chunk": d(conv=lenet(weight_grad_chunk=0), devices=2,
                      what="current with XLA's weight gradient"),
        "flax_pool": d(pool=_flax_pool, devices=2, what="current with nn.max_pool"),
        "tap_dots": d(conv=lenet(tap_wgrad="dots"), devices=2,
                      what="weight gradient as one dot per kernel tap (no transposes)"),
        "im2col_wgrad": d(conv=lenet(tap_wgrad="im2col"), devices=2,
                          what="weight gradient as one im2col dot"),
        "chunk8": d(conv=lenet(weight_grad_chunk=8), devices=2,
                    what="weight gradient in 8-example chunks"),
        "contiguous": d(conv=_variant_conv(), devices=2,
                        what="contiguous weight-gradient chunks (GSPMD moves them)"),
        "ynn_off": d(options={"xla_cpu_experimental_ynn_fusion_type": ""}, devices=2,
                     what="current, YNNPACK fusions off (all convs on Eigen)"),
    }
  return {
      "current": d(devices=1, what="committed: chunked weight grad (16), stride-2 input "
                   "grads by phases, padded stem forward (where the CPU rule says); 1 device "
                   "(the trainer's)"),
      "xla_grads": d(conv=lax.conv_general_dilated, devices=1,
                     what="XLA's convolution and gradients (before session 3)"),
      "session3": d(conv=_variant_conv(pad=False, phase_input_grad=False), devices=1,
                    what="session 3: chunked weight grad only"),
      "no_phase": d(conv=_variant_conv(phase_input_grad=False), devices=1,
                    what="current with XLA's stride-2 input gradient"),
      "no_pad": d(conv=_variant_conv(pad=False), devices=1,
                  what="current without the padded stem forward"),
      "pad": d(conv=_variant_conv(pad=True), devices=1,
               what="current with the padded stem forward"),
      "chunk8": d(conv=_variant_conv(weight_grad_chunk=8), devices=1,
                  what="weight gradient in 8-example chunks"),
      "chunk32": d(conv=_variant_conv(weight_grad_chunk=32), devices=1,
                   what="weight gradient in 32-example chunks"),
      "interleaved": d(conv=_variant_conv(interleave=True), devices=1,
                       what="interleaved weight-gradient chunks (as LeNet5)"),
      "chunk_major": d(conv=_variant_conv(chunk_major=True), devices=1,
                       what="chunked weight grad, operands transposed once, chunk-major"),
      "tap_dots": d(conv=_variant_conv(tap_wgrad="dots"), devices=1,
                    what="weight gradient as one dot per kernel tap (no transposes)"),
      "im2col_wgrad": d(conv=_variant_conv(tap_wgrad="im2col"), devices=1,
                        what="weight gradient as one im2col dot"),
      "scan16": d(conv=_variant_conv(scan=True), devices=1,
                  what="chunked weight grad as a lax.scan (compile-time lever)"),
      "input_chunk16": d(conv=_variant_conv(input_grad_chunk=16, phase_input_grad=False),
                         devices=1, what="input gradient chunked like the weight gradient (16)"),
      "input_chunk32": d(conv=_variant_conv(input_grad_chunk=32, phase_input_grad=False),
                         devices=1, what="input gradient in 32-example chunks"),
      "fused_bn": d(bn=_fused_batch_norm, devices=1,
                    what="BatchNorm with a closed-form gradient (custom_vjp, 2 reductions)"),
      "2dev": d(devices=2, what="current, batch split over 2 devices"),
      "ynn_off": d(options={"xla_cpu_experimental_ynn_fusion_type": ""}, devices=1,
                   what="YNNPACK fusions off: every conv on Eigen"),
      "ynn_all": d(options={"xla_cpu_experimental_ynn_fusion_type": ",".join(
          _LIB + t for t in ("INDIVIDUAL_CONVOLUTION", "DOT", "ELTWISE", "REDUCE"))},
                   devices=1, what="YNNPACK also for elementwise ops and reductions (BatchNorm)"),
      "xnn_greedy": d(options={"xla_cpu_experimental_xnn_graph_fusion_mode":
                               "XNN_GRAPH_FUSION_MODE_GREEDY"}, devices=1,
                      what="XNNPACK graph fusion, greedy"),
      "onednn": d(options={"xla_cpu_use_onednn": True,
                           "xla_cpu_experimental_onednn_fusion_type":
                               _LIB + "INDIVIDUAL_CONVOLUTION"}, devices=1,
                  what="oneDNN flags (convolution fusion type)"),
      "llvm_O2": d(options={"xla_backend_optimization_level": 2}, devices=1,
                   what="LLVM -O2 (XLA's default) instead of the trainer's -O1 "
                   "(step.CPU_COMPILER_OPTIONS)"),
      "llvm_cheap": d(options={"xla_llvm_disable_expensive_passes": True}, devices=1,
                      what="XLA's expensive LLVM passes off (compile-time lever)"),
      "concurrency_sched": d(options={"xla_cpu_scheduler_type":
                                      "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"}, devices=1,
                             what="concurrency-optimised HLO scheduler"),
  }


def _library_kinds(text):
  """Which runtimes the compiled program calls: counts of YNNPACK/oneDNN/XNNPACK fusions."""
  kinds = {k: text.count(f'"kind":"__{k}_fusion"') for k in ("ynn", "onednn", "xnn")}
  kinds["convs"] = text.count(" convolution(")  # Inside library fusions or run by Eigen.
  return kinds


def _build(model, lever):
  """Compiles one variant: (compiled step, state, batch, compile s, library kinds)."""
  saved = (layers.conv, layers.cpu_conv_split_batch, layers.max_pool_2x2, layers.batch_norm)
  if "bn" in lever:
    layers.batch_norm = lever["bn"]
  if "conv" in lever:
    layers.conv = functools.partial(nn.Conv, use_bias=False, kernel_init=layers.conv_init,
                                    conv_general_dilated=lever["conv"])
    layers.cpu_conv_split_batch = lever["conv"]
  if "pool" in lever:
    layers.max_pool_2x2 = lever["pool"]
  try:
    runs, members = (int(v) for v in _STACK.value.split("x"))
    train_step, state, batch = common.build_case(model, runs, members, "loop", _BATCH.value,
                                                 lever["devices"])
    start = time.perf_counter()
    compiled = train_step.lower(state, batch, {}).compile(lever.get("options"))
    compile_s = time.perf_counter() - start
  finally:
    (layers.conv, layers.cpu_conv_split_batch, layers.max_pool_2x2,
     layers.batch_norm) = saved
  state, _ = compiled(state, batch, {})  # Warm-up.
  jax.block_until_ready(state)
  return compiled, state, batch, compile_s, _library_kinds(compiled.as_text())


def main(argv):
  del argv
  host_devices.configure(host_devices.num_cores())  # Before any jax op.
  rows = []
  for model in _MODELS.value:
    levers = _levers(model)
    names = [n for n in levers if not _LEVERS.value or n in _LEVERS.value]
    built = {}
    for name in names:
      if levers[name]["devices"] > len(jax.devices()):
        continue
      built[name] = list(_build(model, levers[name]))
    times = {name: [] for name in built}
    for _ in range(_ROUNDS.value):
      for name, case in built.items():
        for _ in range(_STEPS.value):
          start = time.perf_counter()
          case[1], _ = case[0](case[1], case[2], {})
          jax.block_until_ready(case[1])
          times[name].append(time.perf_counter() - start)
    base = statistics.median(times["current"]) if "current" in times else float("nan")
    for name, case in built.items():
      ms = 1e3 * statistics.median(times[name])
      row = dict(model=model, stack=_STACK.value, lever=name, what=levers[name]["what"],
                 devices=levers[name]["devices"], step_ms=ms, ratio_to_current=ms / 1e3 / base,
                 compile_s=case[3], runtimes=case[4], steps=len(times[name]))
      rows.append(row)
      if _JSON.value:
        print(json.dumps(row), flush=True)
  if not _JSON.value:
    print(f"jax {jax.__version__}, stack {_STACK.value}, batch {_BATCH.value} per run, median of "
          f"{_ROUNDS.value} rounds x "
          f"{_STEPS.value} steps, round-robin")
    print("| model | lever | what | devices | step ms | / current | compile s | YNN / oneDNN / "
          "XNN fusions, convolutions |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
      k = r["runtimes"]
      print(f"| {r['model']} | {r['lever']} | {r['what']} | {r['devices']} | {r['step_ms']:.1f} "
            f"| {r['ratio_to_current']:.2f} | {r['compile_s']:.1f} | {k['ynn']} / {k['onednn']} "
            f"/ {k['xnn']}, {k['convs']} |")


if __name__ == "__main__":
  app.run(main)
