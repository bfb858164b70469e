"""README's study tables are what the code prints (churn_jax/cli/docs_tables.py).

tests/data/default_study is a cache of the default study's workdir (`churn-jax docs --cache
runs/mnist1d tests/data/default_study`): its results.json and the deployed probabilities of
every method. The tables are re-derived from the probabilities, so a change to the metrics or
the table format, or a typed number in README, fails here.
"""

import contextlib
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np

from churn_jax.cli import command, docs_tables
from churn_jax.outputs import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
CACHE = os.path.join(ROOT, "tests", "data", "default_study")
WORKDIR = "runs/mnist1d"  # The workdir README's default-study blocks name.
# Every cached workdir README names: the default study and examples/custom's study.
# README's `churn-jax compare` example: the three .npy files its snippet writes (150 kB).
SOURCES = {WORKDIR: CACHE,
           "runs/custom": os.path.join(ROOT, "tests", "data", "custom_example"),
           ".": os.path.join(ROOT, "tests", "data", "compare_example")}


class DocsTablesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    with open(README) as f:
      cls.readme = f.read()
    # Only the cached study's blocks: the others need their own (uncached) workdirs.
    cls.fresh = docs_tables.render(cls.readme, SOURCES, only=list(SOURCES))

  def test_readme_default_study_tables_are_what_the_code_prints(self):
    kinds = [(m["kind"], m["workdir"], m["against"]) for m in docs_tables.blocks(self.readme)]
    self.assertIn(("results", WORKDIR, None), kinds)
    self.assertIn(("differences", WORKDIR, None), kinds)
    self.assertIn(("results", "runs/custom", None), kinds)
    self.assertIn(("compare", ".", None), kinds)
    self.assertEqual(self.fresh, self.readme)  # Run `churn-jax docs --write` after a study.

  def test_readme_names_the_machine_the_cache_came_from(self):
    machine = docs_tables.machine(CACHE)  # results.json's environment.host_cpu.
    self.assertTrue(machine.startswith("AMD EPYC"), machine)
    self.assertIn("CPU types seen to print this table: AMD EPYC", self.readme)

  def test_cache_reproduces_what_the_study_printed(self):
    # The study printed format_markdown(results.json); the re-derived table must equal it, so
    # the cache's probabilities are the ones the study's numbers came from.
    with open(os.path.join(CACHE, "results.json")) as f:
      written = json.load(f)
    self.assertEqual(docs_tables.table(CACHE), tables.format_markdown(written))
    fresh = docs_tables.rederive(CACHE)
    for name, entry in written["methods"].items():
      np.testing.assert_allclose(fresh["methods"][name]["churn"]["values"],
                                 entry["churn"]["values"], atol=1e-9)

  def test_churn_in_the_table_matches_numpy(self):
    # Independent of churn_jax's metrics: mean pairwise argmax disagreement over runs.
    with np.load(os.path.join(CACHE, docs_tables.CACHE_FILE)) as f:
      classes = f["baseline.deployed"].argmax(-1)
    pairs = [(classes[i] != classes[j]).mean() for i in range(len(classes))
             for j in range(i + 1, len(classes))]
    row = next(line for line in docs_tables.table(CACHE).splitlines()
               if line.startswith("| baseline |"))
    self.assertEqual(row.split(" | ")[5].split(" ± ")[0], f"{100 * np.mean(pairs):.2f}")

  def test_the_table_follows_the_probabilities_not_results_json(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp)
    shutil.copy(os.path.join(CACHE, "results.json"), tmp)
    with np.load(os.path.join(CACHE, docs_tables.CACHE_FILE)) as f:
      arrays = {k: f[k] for k in f.files}
    deployed = arrays["baseline.deployed"].copy()
    k = deployed.shape[-1]
    deployed[0] = np.eye(k, dtype=deployed.dtype)[(deployed[0].argmax(-1) + 1) % k]
    arrays["baseline.deployed"] = deployed  # Run 0 now disagrees with every other run.
    np.savez(os.path.join(tmp, docs_tables.CACHE_FILE), **arrays)
    row = next(line for line in docs_tables.table(tmp).splitlines()
               if line.startswith("| baseline |"))
    classes = deployed.argmax(-1)
    churn = np.mean([(classes[i] != classes[j]).mean() for i in range(5)
                     for j in range(i + 1, 5)])
    self.assertEqual(row.split(" | ")[5].split(" ± ")[0], f"{100 * churn:.2f}")
    self.assertNotIn(row, self.readme)

  def test_a_typed_number_is_caught_and_rewritten(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp)
    path = os.path.join(tmp, "README.md")
    table = docs_tables.blocks(self.readme)[0]["body"]
    row = next(line for line in table.splitlines() if line.startswith("| baseline |"))
    cells = row.split(" | ")
    cells[4] = "85.99 ± 0.29"  # The stale accuracy the README once showed.
    stale = self.readme.replace(row, " | ".join(cells))
    with open(path, "w") as f:
      f.write(stale)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      code = command.main(["docs", "--source", f"{WORKDIR}={CACHE}", "--only", WORKDIR, path])
    self.assertEqual(code, 1)
    self.assertEqual(len(err.getvalue().strip().splitlines()), 1, err.getvalue())
    with open(path) as f:
      self.assertEqual(f.read(), stale)  # A check writes nothing.
    with contextlib.redirect_stdout(io.StringIO()):
      self.assertEqual(command.main(["docs", "--write", "--source", f"{WORKDIR}={CACHE}",
                                     "--only", WORKDIR, path]), 0)
    with open(path) as f:
      self.assertEqual(f.read(), self.readme)

  def test_a_block_whose_workdir_is_missing_fails_the_check(self):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      code = command.main(["docs", "--source", f"{WORKDIR}=/nonexistent/dir", "--only",
                           WORKDIR, README])
    self.assertEqual(code, 1)
    self.assertIn("no results.json", err.getvalue())

  def test_a_workdir_whose_predictions_changed_is_refused(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp)
    with open(os.path.join(CACHE, "results.json")) as f:
      results = json.load(f)
    os.makedirs(os.path.join(tmp, "predictions"))
    shutil.copy(os.path.join(CACHE, "results.json"), tmp)
    method = next(iter(results["methods"]))
    with open(os.path.join(tmp, results["methods"][method]["predictions"]["path"]), "wb") as f:
      f.write(b"not the study's predictions")
    with self.assertRaisesRegex(ValueError, "changed since results.json"):
      docs_tables.table(tmp)


if __name__ == "__main__":
  absltest.main()
