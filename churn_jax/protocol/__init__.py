"""The App. A protocol of Bhojanapalli et al. 2021 from a study's results: every coefficient
of every method, the best one by churn (on the test split as the paper does, or on a held-out
validation split), a Table-2-style summary with intervals against the baseline, and Table 1
(the sources of churn)."""
