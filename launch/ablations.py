"""The ablations that judge a method against its own control, as one command each.

  # Anti-distillation against the shared-batch 2-ensemble (its lambda = 0), lambda swept for
  # the penalty on probabilities and on logits (issue 25):
  python launch/ablations.py --config=experiments/digits.py:runs=10 --workdir=/tmp/anti \
      --study=anti_distill --validation_fraction=0.1
  # App. C of Bhojanapalli et al.: linear ramp-up vs step burn-in at the same loss (SKL with
  # joint updates; CE to the peer with independent updates), and the two losses at one ramp:
  python launch/ablations.py --config=experiments/digits.py:runs=10 --workdir=/tmp/rampup \
      --study=rampup
  # Nam et al. 2021: DE-4 -> BE-4 students (KD, ODS, c-ODS, Gaussian, ODS eta sweep):
  python launch/ablations.py --config=experiments/digits.py:runs=5 --workdir=/tmp/nam \
      --study=nam
  # Table 3: the core methods with and without weight decay (one sub-study per value):
  python launch/ablations.py --config=experiments/digits.py:runs=10 --workdir=/tmp/table3 \
      --study=table3 --validation_fraction=0.1
  # The top-k regularisers on 100 classes, against the same study over every class:
  python launch/ablations.py --config=experiments/multiview.py:classes=100,runs=5,mlp,topk=0 \
      --workdir=/tmp/topk_all --study=topk
  python launch/ablations.py --config=experiments/multiview.py:classes=100,runs=5,mlp \
      --workdir=/tmp/topk --study=topk --compare_to=/tmp/topk_all

Writes <workdir>/ablation.md: the command, machine and wall time, and per sub-study the
protocol tables against the baseline and the table of differences against the study's
reference (stats.difference: paired jackknife intervals, Holm per column); for `nam` also the
students' fidelity to their teacher and the member diversity of teacher and students
(protocol/diversity.py); with --compare_to, each method against its namesake in another study.
"""

import json
import os
import shlex
import sys
import time

from absl import flags, logging
from ml_collections import config_flags

from churn_jax.cli import script
from churn_jax.configs import config_lib

FLAGS = flags.FLAGS


def define_flags():
  """Defined only when run as a script, so tests can import the helpers below."""
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/*.py), optionally with ':args'.",
      lock_config=False)
  flags.DEFINE_string("workdir", None, "Directory of the study (sub-studies inside).")
  flags.DEFINE_string("study", None, "anti_distill | rampup | table3 | nam | topk")
  flags.DEFINE_float("validation_fraction", 0.0, "Hold out this fraction of the training data "
                     "to select coefficients on (0: select on test).")
  flags.DEFINE_string("compare_to", "", "A finished workdir (a folder or gs://...) of the same "
                      "study with one setting changed (same seeds): each plain method against "
                      "its namesake there; checked before training.")

_ANTI_BETAS = ",".join(f"{b:g}" for b in config_lib.ANTI_DISTILL_BETAS)
# name -> (plain methods, sweep spec, reference of the control table, what it tests).
STUDIES = {
    "anti_distill": (["baseline", "ensemble2_shared", "ensemble2"],
                     f"anti_distill:beta={_ANTI_BETAS};anti_distill_logits:beta={_ANTI_BETAS}",
                     "ensemble2_shared",
                     "anti-distillation (probabilities / logits, lambda selected) against the "
                     "shared-batch 2-ensemble, the same members and batches at lambda = 0"),
    "rampup": (["baseline", "codistill", "codistill_step", "codistill_ce_linear",
                "codistill_ce"], "", "codistill",
               "App. C: linear ramp-up (codistill, codistill_ce_linear) against step burn-in "
               "(codistill_step, codistill_ce) at the same loss"),
    "table3": (["baseline", "entropy", "skl", "codistill"], "", "baseline",
               "Table 3: the core methods with and without weight decay"),
    "nam": (config_lib.NAM_METHODS.split(","), "", "nam_kd",
            "Nam et al. 2021's setting: a DE-4 teacher, BatchEnsemble-4 students distilled "
            "member by member (alpha 0.9, T 1): ODS, confidence ODS, Gaussian and ODS at "
            "other eta against the plain KD student"),
    "topk": (["baseline", "entropy", "skl", "codistill_entropy"], "", "baseline",
             "the top-k regularisers (config top_k) on a many-class data set"),
}


def sub_configs(config, study: str):
  """[(sub-study name, config)]: Table 3 trains once per weight decay, the others once."""
  if study != "table3":
    return [("", config)]
  out = []
  for wd in (0.0, float(config.optimizer.weight_decay)):
    sub = config.copy_and_resolve_references()
    sub.optimizer.weight_decay = wd
    out.append((f"weight_decay={wd:g}", sub))
  return out


def fidelity(student: "np.ndarray", teacher: "np.ndarray") -> dict:
  """How much of its teacher a student took: per run r (student r learnt from teacher r),
  top-1 agreement between the two deployed predictions (R, N, K) and KL(teacher || student)
  of the predictive distributions, averaged over the test examples; mean and std over runs.
  (Stanton et al. 2021's fidelity measures; the papers folder has only Nam et al.'s abstract,
  so these are not claimed to be theirs.)"""
  import numpy as np  # pylint: disable=g-import-not-at-top
  student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
  agree = (student.argmax(-1) == teacher.argmax(-1)).mean(-1)
  eps = 1e-12
  kl = (teacher * (np.log(teacher + eps) - np.log(student + eps))).sum(-1).mean(-1)
  return {"agreement": (float(agree.mean()), float(agree.std())),
          "kl": (float(kl.mean()), float(kl.std()))}


def fidelity_markdown(workdir: str, results, teacher: str) -> str:
  """The fidelity table of every distilled student of `teacher` in a finished workdir."""
  from churn_jax.outputs import predictions  # pylint: disable=g-import-not-at-top
  load = lambda n: predictions.load(os.path.join(
      workdir, results["methods"][n]["predictions"]["path"]))["deployed"]
  lines = [f"| student | top-1 agreement with {teacher} % | KL({teacher} ‖ student) |",
           "|---|---|---|"]
  teacher_probs = load(teacher)
  for name, entry in results["methods"].items():
    if name == teacher or config_lib.nam_method_configs().get(name) is None:
      continue
    f = fidelity(load(name), teacher_probs)
    lines.append(f"| {name} | {100 * f['agreement'][0]:.2f} ± {100 * f['agreement'][1]:.2f} | "
                 f"{f['kl'][0]:.4f} ± {f['kl'][1]:.4f} |")
  return "\n".join(lines) + "\n"


def against_study(results, other, names, other_label: str) -> str:
  """Each method of `names` in `results` minus the same method in `other` (a study with the
  same seeds and one setting changed, e.g. top_k): stats.difference paired by run index, Holm
  over the methods per column."""
  from churn_jax.protocol import stats, tables  # pylint: disable=g-import-not-at-top
  names = [n for n in names if n in results["methods"] and n in other["methods"]]
  columns = tables.DIFF_METRICS[:3]
  diffs = {key: [stats.difference(results["methods"][n], other["methods"][n], key)
                 for n in names] for _, key in columns}
  for column in diffs.values():
    stats.judge(column)
  lines = ["| method | " + " | ".join(f"Δ{title} vs {other_label}" for title, _ in columns)
           + " |", "|---|" + "---|" * len(columns)]
  for i, name in enumerate(names):
    lines.append(f"| {name} | " + " | ".join(stats.verdict_text(diffs[key][i])
                                             for _, key in columns) + " |")
  return "\n".join(lines) + "\n"


def other_results_path(compare_to: str, name: str) -> str:
  """results.json of sub-study `name` in the --compare_to study (a local folder or gs://...)."""
  return os.path.join(compare_to, name, "results.json")  # name "": compare_to/results.json


def other_results(compare_to: str, name: str) -> dict:
  from churn_jax.runtime import fileio  # pylint: disable=g-import-not-at-top
  return json.loads(fileio.read_text(other_results_path(compare_to, name)))


def compare_to_problem(config, study: str, compare_to: str):
  """None when every sub-study's results.json is readable under `compare_to`, else the one
  line to print: checked before training, which the comparison would otherwise end."""
  from churn_jax.runtime import fileio  # pylint: disable=g-import-not-at-top
  missing = fileio.remote_backend_missing(compare_to)
  if missing:
    return f"--compare_to {compare_to}: {missing}"
  for name, _ in sub_configs(config, study):
    path = other_results_path(compare_to, name)
    if not fileio.exists(path):
      return f"--compare_to {compare_to} is not a finished {study} study: {path} is missing"
  return None


def run(config, workdir: str, study: str, validation_fraction: float,
        compare_to: str = "") -> str:
  """Trains the study's sub-studies and returns ablation.md's body (tables per sub-study)."""
  from churn_jax.protocol import diversity, tables  # pylint: disable=g-import-not-at-top
  from churn_jax.study import sweep_stages, sweeps  # pylint: disable=g-import-not-at-top
  plain, spec, reference, _ = STUDIES[study]
  selection = "validation" if validation_fraction else "test"
  text = []
  for name, sub in sub_configs(config, study):
    sub_dir = os.path.join(workdir, name) if name else workdir
    results = sweep_stages.train_staged(sub, sub_dir, sweeps.parse_sweeps(spec), plain,
                                  validation_fraction)
    if results["failed"]:
      raise FloatingPointError(f"diverged, left out: {', '.join(results['failed'])}")
    tables.write_protocol(sub_dir, results, f"# {study} {name}".rstrip())
    text.append(f"\n## {name or study}: against the baseline (selected on {selection} churn)\n")
    text.append(tables.summary_markdown(tables.summary_rows(results, selection)))
    if reference != "baseline":
      rows = tables.summary_rows(results, selection, baseline=reference)
      text.append(f"\n## {name or study}: against {reference}\n")
      text.append(tables.summary_markdown(rows, baseline=reference))
    if study == "nam":
      text.append("\n## Fidelity of each student to its DE-4 teacher (per run, same run id)\n")
      text.append(fidelity_markdown(sub_dir, results, "ensemble4"))
      text.append("\n## Member diversity of the teacher and the BatchEnsemble students "
                  "(per run; protocol/diversity.py)\n")
      text.append(diversity.rows_markdown(diversity.study_rows(sub_dir, results), "ensemble4",
                                         "nam_kd"))
    if compare_to:
      other = other_results(compare_to, name)
      text.append(f"\n## {name or study}: each method against itself in "
                  f"{os.path.dirname(other_results_path(compare_to, name))}\n")
      text.append(against_study(results, other, [m for m in plain if m != "baseline"],
                                "other"))
  return "\n".join(text)


def main(argv):  # Errors become one line and exit 1 in script.run.
  del argv
  if FLAGS.study not in STUDIES:
    print(f"error: unknown study {FLAGS.study!r}; known: {', '.join(STUDIES)}", file=sys.stderr)
    sys.exit(1)
  try:  # config_flags loads the file lazily: its failure surfaces at the first read.
    FLAGS.config.keys()
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(script.config_error(FLAGS["config"].config_filename, e)) from None
  if FLAGS.compare_to:
    problem = compare_to_problem(FLAGS.config, FLAGS.study, FLAGS.compare_to)
    if problem:
      print(f"error: {problem}", file=sys.stderr)
      sys.exit(1)
  from churn_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()  # Before anything touches a JAX backend.
  import jax  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import sweep  # pylint: disable=g-import-not-at-top
  from churn_jax.outputs import results_files  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  start = time.perf_counter()
  body = run(FLAGS.config, FLAGS.workdir, FLAGS.study, FLAGS.validation_fraction,
             FLAGS.compare_to)
  seconds = time.perf_counter() - start
  command = "python launch/ablations.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  text = (f"# Ablation: {FLAGS.study}\n\n{STUDIES[FLAGS.study][3]}.\n\nCommand: `{command}`\n\n"
          f"Wall time {seconds:.0f} s on {sweep.machine()}.\n" + body)
  if jax.process_index() == 0:  # One writer on a multi-host slice.
    results_files.atomic_write(os.path.join(FLAGS.workdir, "ablation.md"), text)
  print(text)


if __name__ == "__main__":
  define_flags()
  script.run(main, __doc__, required=("config", "workdir", "study"))
